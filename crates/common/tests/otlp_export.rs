//! With an OTLP endpoint configured, spans are OpenTelemetry spans: they continue the caller's
//! trace, hand it on, and reach the collector. (A process of its own: the tracing subscriber
//! is global, and every other test runs without an exporter.)
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use common::config::Env;
use common::telemetry;

#[tokio::test]
async fn spans_continue_the_callers_trace_and_are_exported() {
    let received = Arc::new(Mutex::new(Vec::<(String, Bytes)>::new()));
    let collector = {
        let received = received.clone();
        axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| async move {
                received.lock().unwrap().push(("/v1/traces".into(), body));
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    telemetry::init_for_tests_with(&Env::from_pairs([(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        endpoint.as_str(),
    )]));

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        telemetry::TRACEPARENT,
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
    telemetry::continue_trace(&span, &telemetry::HttpHeaders(&headers));
    let handed_on = span.in_scope(telemetry::current_traceparent).unwrap();
    assert!(
        handed_on.starts_with(&format!("00-{trace_id}-")),
        "{handed_on}"
    );
    assert!(!handed_on.contains("00f067aa0ba902b7"), "{handed_on}");
    drop(span);

    // Flushes the batch exporter (a blocking HTTP client, so off the async threads).
    tokio::task::spawn_blocking(telemetry::shutdown)
        .await
        .unwrap();
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let exported = test_eventually(|| {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(_, body)| body.windows(16).any(|w| w == trace_bytes.as_slice()))
    })
    .await;
    assert!(exported, "no exported span carries the caller's trace id");
}

/// Polls `check` for up to 5 s.
async fn test_eventually(check: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}
