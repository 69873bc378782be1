//! A full event stream loses nothing: events that do not fit wait in the outbox, readiness and
//! `/metrics` say the stream is full, and once there is room every one of them is published.

use common::metrics::names::{EVENTS_OUTBOX_PENDING, EVENTS_STREAM_MAX_BYTES, series};
use futures::future::join_all;
use reqwest::StatusCode;
use test_support::metrics::{sample, scrape};
use test_support::{TestApp, TestContext, WAIT, eventually, fake_user};

/// Room for a few hundred events; the smallest the service accepts is above 64 KiB.
const MAX_BYTES: &str = "131072";
/// More creations than fit.
const TICKETS: usize = 600;

#[tokio::test]
async fn events_wait_in_the_outbox_while_the_stream_is_full_and_all_go_out_after() {
    let context = TestContext::new();
    let service = context
        .build_with::<tickets::Config>(|env| env.with("EVENTS_STREAM_MAX_BYTES", MAX_BYTES))
        .await;
    let app = TestApp::serve(context.clone(), vec![service]).await;
    let seller = fake_user();
    let titles: Vec<String> = (0..TICKETS).map(|n| format!("t{n}")).collect();
    let created = join_all(
        titles
            .iter()
            .map(|title| app.create_ticket(&seller, title, 5.0)),
    )
    .await;
    assert_eq!(
        created.len(),
        TICKETS,
        "every creation is answered 201 (checked inside)"
    );

    // Full: the service says so, and what did not fit waits in the outbox.
    let pending = series(EVENTS_OUTBOX_PENDING, &[("service", "tickets")]);
    let stuck = eventually(
        "the outbox to hold what the stream refused",
        WAIT,
        || async {
            let body = scrape(&app).await;
            let waiting = sample(&body, &pending)?;
            (waiting > 0.0).then_some((waiting, body))
        },
    )
    .await;
    let max = series(EVENTS_STREAM_MAX_BYTES, &[("service", "tickets")]);
    assert_eq!(sample(&stuck.1, &max), Some(131_072.0), "{}", stuck.1);
    let ready = app.get("/readyz", None).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert!(
        ready.body["checks"]["events-stream"]
            .as_str()
            .is_some_and(|check| check.contains("full")),
        "{}",
        ready.body
    );

    // Room again (a bus with the default limit updates the stream), and nothing was lost.
    let _roomy = context.bus().await;
    eventually("every waiting event to be published", WAIT, || async {
        let body = scrape(&app).await;
        (sample(&body, &pending) == Some(0.0)).then_some(())
    })
    .await;
    let events = context.events().await;
    let published = events
        .iter()
        .filter(|(subject, _)| subject == "ticket:created")
        .count();
    assert_eq!(published, TICKETS);
    assert_eq!(app.get("/readyz", None).await.status, StatusCode::OK);
}
