//! Hostile clients against the tickets service: one client trickling bodies on 70 connections
//! does not freeze the public list for others, and one account cannot write in a loop.

use std::time::Duration;

use common::server::Limits;
use reqwest::StatusCode;
use test_support::{TestApp, TestContext, fake_user};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::build;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_slow_bodies_do_not_freeze_the_list_and_get_408() {
    let context = TestContext::new();
    let service = build(&context).await;
    let limits = Limits {
        body_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let app = TestApp::serve_limited(context, TestApp::listener().await, vec![service], limits);
    let slow_user = fake_user();
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..70 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/tickets HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
            slow_user.cookie
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // While they hang, another visitor's list answers, each time within a second (a bound far
    // above the milliseconds it takes, far below the body timeout the slow ones wait out).
    let started = tokio::time::Instant::now();
    while started.elapsed() < limits.body_timeout / 2 {
        let list = tokio::time::timeout(Duration::from_secs(1), app.get("/api/tickets", None))
            .await
            .expect("the public list waited behind the slow bodies");
        assert_eq!(list.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for stream in &mut slow {
        let mut answer = vec![0_u8; 12];
        tokio::time::timeout(limits.body_timeout * 3, stream.read_exact(&mut answer))
            .await
            .expect("a slow body was never answered")
            .unwrap();
        assert_eq!(
            &answer,
            b"HTTP/1.1 408",
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let count = app
        .context
        .database("tickets")
        .await
        .collection::<mongodb::bson::Document>("tickets")
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(count, 0, "a half-sent ticket was created");
}

#[tokio::test]
async fn one_account_writing_in_a_loop_gets_429_and_others_do_not() {
    let context = TestContext::new();
    let service = context
        .build_with::<tickets::Config>(|env| {
            env.with("WRITE_RATE_LIMIT_BURST", "20")
                .with("WRITE_RATE_LIMIT_PER_MINUTE", "2")
        })
        .await;
    let app = TestApp::serve(context, vec![service]).await;
    let (looping, other) = (fake_user(), fake_user());
    let ticket = app.create_ticket(&looping, "concert", 5.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    for n in 1..20 {
        let edit = serde_json::json!({"title": format!("edit {n}"), "price": 5});
        let response = app.put(&path, Some(&looping.cookie), edit).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "write {n}: {}",
            response.body
        );
    }
    let edit = serde_json::json!({"title": "one too many", "price": 5});
    let refused = app.put(&path, Some(&looping.cookie), edit).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    refused.assert_error_shape();
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        app.get(&path, None).await.body["title"],
        "edit 19",
        "the refused write changed nothing"
    );
    // Reads and other accounts are not limited by it.
    assert_eq!(app.get(&path, None).await.status, StatusCode::OK);
    app.create_ticket(&other, "another seller", 7.0).await;
}
