//! The server's limits against clients that hold on, flood or never finish: slow bodies get 408
//! and never hold a slot, a full queue answers 503 at once, a request past its time gets 503,
//! idle or half-sent heads are closed, and connections beyond the cap wait for one to close.
//! A handler that panics costs its request a 500, not the server.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use common::security::HttpSecurity;
use common::server::{HttpConfig, Limits, Server, Service};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Far longer than any answer on an idle machine: a check that waits this long has failed.
const PATIENCE: Duration = Duration::from_secs(10);

/// A server of one service with `limits`: `/fast` answers at once, `/gate` waits for a permit
/// of `gate`, `/stuck` never answers, `/panic` panics, `POST /echo` answers with its body's
/// length.
async fn serve(limits: Limits, gate: Arc<Semaphore>) -> (String, CancellationToken) {
    let router = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/gate",
            get(move || {
                let gate = Arc::clone(&gate);
                async move {
                    let _permit = gate.acquire().await;
                    "through"
                }
            }),
        )
        .route("/stuck", get(std::future::pending::<()>))
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("a handler's bug");
                }
            }),
        )
        .route(
            "/echo",
            post(|body: String| async move { body.len().to_string() }),
        );
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let http = HttpConfig {
        listen: addr,
        security: HttpSecurity::default(),
        limits,
    };
    let server = Server::from_listener(
        listener,
        vec![Service::new("test", router, Vec::new())],
        shutdown.clone(),
    )
    .unwrap()
    .with_http(&http);
    tokio::spawn(server.run());
    (addr.to_string(), shutdown)
}

/// Sends `request` raw on a new connection and reads the status and headers of the answer.
async fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_head(&mut stream).await
}

async fn read_head(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            Ok(_) => break,
            Err(_) => panic!("no answer within {PATIENCE:?}"),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase())
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_never_hold_a_slot() {
    let limits = Limits {
        body_timeout: Duration::from_secs(2),
        max_in_flight: 4,
        max_queued: 4,
        ..Limits::default()
    };
    let (addr, _shutdown) = serve(limits, Arc::new(Semaphore::new(0))).await;
    // Far more slow senders than slots and queue together: each sends a head announcing 1,000
    // bytes, then one byte, then nothing.
    let mut slow = Vec::new();
    for _ in 0..70 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let head = "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
                    Content-Length: 1000\r\n\r\nx";
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // Meanwhile another client is served as usual, again and again.
    for _ in 0..5 {
        let answered =
            tokio::time::timeout(Duration::from_secs(1), raw(&addr, &get_request("/fast")))
                .await
                .expect("a fast request waited behind the slow bodies");
        assert_eq!(answered.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = tokio::time::Instant::now();
    for stream in &mut slow {
        let (status, head) = read_head(stream).await;
        assert_eq!(status, 408, "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }
    // All 70 answered once the body timeout ran out, not one after another.
    assert!(started.elapsed() < limits.body_timeout + Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_queue_gets_503_at_once_and_readiness_recovers() {
    let limits = Limits {
        max_in_flight: 2,
        max_queued: 3,
        ..Limits::default()
    };
    let gate = Arc::new(Semaphore::new(0));
    let (addr, _shutdown) = serve(limits, Arc::clone(&gate)).await;
    let flood: Vec<_> = (0..25)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move { raw(&addr, &get_request("/gate")).await })
        })
        .collect();
    // The refused ones answer while the gate is still shut: at once, not after a wait.
    let admitted = limits.max_in_flight + limits.max_queued;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while flood.iter().filter(|r| r.is_finished()).count() < flood.len() - admitted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood beyond the queue was not refused at once"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut refused = 0;
    let mut pending = Vec::new();
    for request in flood {
        if request.is_finished() {
            let (status, head) = request.await.unwrap();
            assert_eq!(status, 503, "{head}");
            assert!(head.contains("retry-after: 1"), "{head}");
            refused += 1;
        } else {
            pending.push(request);
        }
    }
    assert_eq!(pending.len(), admitted);
    let (ready, body) = raw(&addr, &get_request("/readyz")).await;
    assert_eq!(ready, 503, "a full service says so: {body}");
    gate.add_permits(1_000);
    for request in pending {
        let (status, head) = request.await.unwrap();
        assert_eq!(status, 200, "{head}");
    }
    assert_eq!(refused, 25 - admitted);
    assert_eq!(raw(&addr, &get_request("/readyz")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_time_gets_503() {
    let limits = Limits {
        request_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (addr, _shutdown) = serve(limits, Arc::new(Semaphore::new(0))).await;
    let (status, head) = raw(&addr, &get_request("/stuck")).await;
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("retry-after"), "{head}");
    assert_eq!(raw(&addr, &get_request("/fast")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_not_sent_in_time_closes_the_connection() {
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (addr, _shutdown) = serve(limits, Arc::new(Semaphore::new(0))).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /fast HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the half-sent head was never given up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_left_idle_after_its_answers_is_closed_in_time() {
    let header_timeout = Duration::from_secs(1);
    let limits = Limits {
        header_timeout,
        ..Limits::default()
    };
    let (addr, _shutdown) = serve(limits, Arc::new(Semaphore::new(0))).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    // Two answers on the connection, each head sent after a pause of the client's: the second
    // head's deadline is then later than the first's, which the connection's shared timer was
    // armed for, so closing on time needs that timer moved on (`server/timer.rs`).
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream
            .write_all(b"GET /fast HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let (status, head) = read_head(&mut stream).await;
        assert_eq!(status, 200, "{head}");
        let mut body = [0_u8; 4];
        stream.read_exact(&mut body).await.unwrap();
    }
    let answered = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was never closed");
    assert!(
        answered.elapsed() >= header_timeout - Duration::from_millis(100),
        "closed {:?} after its last answer, before its header timeout",
        answered.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_one_to_close() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (addr, _shutdown) = serve(limits, Arc::new(Semaphore::new(0))).await;
    let first = TcpStream::connect(&addr).await.unwrap();
    let _second = TcpStream::connect(&addr).await.unwrap();
    let third = tokio::spawn({
        let addr = addr.clone();
        async move { raw(&addr, &get_request("/fast")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beside two open ones"
    );
    drop(first);
    let (status, _) = tokio::time::timeout(PATIENCE, third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_whole_before_the_handler_and_limited() {
    let (addr, _shutdown) = serve(Limits::default(), Arc::new(Semaphore::new(0))).await;
    let body = "y".repeat(3_000);
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw(&addr, &request).await.0, 200);
    let too_large = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        common::server::BODY_LIMIT_BYTES + 1
    );
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(too_large.as_bytes()).await.unwrap();
    stream
        .write_all(&vec![b'z'; common::server::BODY_LIMIT_BYTES + 1])
        .await
        .unwrap_or(());
    assert_eq!(
        read_head(&mut stream).await.0,
        StatusCode::PAYLOAD_TOO_LARGE.as_u16()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_gets_a_500_in_the_error_shape_and_the_server_goes_on() {
    let (addr, _shutdown) = serve(Limits::default(), Arc::new(Semaphore::new(0))).await;
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(get_request("/panic").as_bytes())
            .await
            .unwrap();
        let (status, head) = read_head(&mut stream).await;
        assert_eq!(status, 500, "{head}");
        assert!(head.contains("x-request-id: "), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        let mut body = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut body))
            .await
            .unwrap()
            .unwrap();
        assert!(body.contains("Something went wrong"), "{body}");
    }
    assert_eq!(raw(&addr, &get_request("/fast")).await.0, 200);
}
