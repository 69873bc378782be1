//! `/metrics` of the tickets service: requests by route template, the events it publishes and
//! consumes, and the backlogs read at scrape time.

use bytes::Bytes;
use common::events::{OrderCreated, OrderCreatedTicket, OrderStatus, Subject};
use reqwest::StatusCode;
use test_support::{TestApp, eventually, fake_user};

use crate::helpers::{WAIT, create_ticket, spawn_app};

/// The text `/metrics` serves.
async fn scrape(app: &TestApp) -> String {
    let response = app
        .http()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// Polls `/metrics` until every series has its value (events arrive asynchronously).
async fn metrics_where(app: &TestApp, expected: &[(&str, f64)]) -> String {
    eventually(&format!("{expected:#?} in /metrics"), WAIT, || async {
        let body = scrape(app).await;
        let all = expected
            .iter()
            .all(|&(series, value)| sample(&body, series) == Some(value));
        all.then_some(body)
    })
    .await
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_events_by_subject_and_consumer() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let user = fake_user();
    let ticket = create_ticket(&app, &user, "concert", 5.0).await;
    let id = ticket["id"].as_str().unwrap();
    for _ in 0..2 {
        let shown = app.get(&format!("/api/tickets/{id}"), None).await;
        assert_eq!(shown.status, StatusCode::OK);
    }
    let missing = app.get("/api/tickets/not-an-id", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/no/such/page", None).await.status,
        StatusCode::NOT_FOUND
    );

    // One poison message, then an order that reserves the ticket (and publishes an update).
    bus.publish_bytes(
        bus.subject(Subject::OrderCreated),
        async_nats::HeaderMap::new(),
        Bytes::from_static(b"{not json"),
    )
    .await
    .unwrap();
    let order = OrderCreated {
        id: mongodb::bson::oid::ObjectId::new().to_hex(),
        version: 0,
        status: OrderStatus::Created,
        user_id: "buyer".to_owned(),
        expires_at: "2030-01-01T00:00:00.000Z".to_owned(),
        ticket: OrderCreatedTicket {
            id: id.to_owned(),
            price: 5.0,
        },
    };
    bus.publish(&order).await.unwrap();

    let reserve = r#"{service="tickets",consumer="tickets-order-created"}"#;
    let release = r#"{service="tickets",consumer="tickets-order-cancelled"}"#;
    let created = r#"{service="tickets",subject="ticket:created"}"#;
    let updated = r#"{service="tickets",subject="ticket:updated"}"#;
    let body = metrics_where(
        &app,
        &[
            (
                r#"http_requests_total{route="/api/tickets",method="POST",status="201"}"#,
                1.0,
            ),
            (
                r#"http_requests_total{route="/api/tickets/{id}",method="GET",status="200"}"#,
                2.0,
            ),
            (
                r#"http_requests_total{route="/api/tickets/{id}",method="GET",status="404"}"#,
                1.0,
            ),
            (
                r#"http_requests_total{route="unmatched",method="GET",status="404"}"#,
                1.0,
            ),
            (
                r#"http_request_duration_seconds_count{route="/api/tickets",method="POST",status="201"}"#,
                1.0,
            ),
            (&format!("events_published_total{created}"), 1.0),
            (&format!("events_published_total{updated}"), 1.0),
            (&format!("events_publish_failures_total{created}"), 0.0),
            (&format!("events_consumed_total{reserve}"), 2.0),
            (&format!("events_acked_total{reserve}"), 1.0),
            (&format!("events_retried_total{reserve}"), 0.0),
            (&format!("events_dead_lettered_total{reserve}"), 1.0),
            (&format!("events_consumed_total{release}"), 0.0),
            (r#"events_outbox_pending{service="tickets"}"#, 0.0),
            (&format!("events_consumer_pending{reserve}"), 0.0),
            (&format!("events_consumer_ack_pending{reserve}"), 0.0),
            (&format!("events_consumer_pending{release}"), 0.0),
        ],
    )
    .await;
    // Raw paths never become series; /metrics does not count itself.
    assert!(!body.contains(id), "{body}");
    assert!(!body.contains("/no/such/page"), "{body}");
    assert!(!body.contains(r#"route="/metrics""#), "{body}");
    // Only the subjects tickets publishes.
    assert!(!body.contains(r#"subject="order:created""#), "{body}");
}

#[tokio::test]
async fn metrics_are_not_served_through_a_proxy() {
    let app = spawn_app().await;
    let response = app
        .http()
        .get(format!("{}/metrics", app.address))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_burst_of_writes_publishes_each_event_once() {
    // The relay sends this process's events by id as they commit and scans for every pending
    // event each 250 ms; during a burst both run, and neither may publish what the other
    // sent. JetStream would drop a duplicate, so the relay's own count is what shows one.
    const WRITES: usize = 150;
    let app = spawn_app().await;
    let user = fake_user();
    let writes = (0..WRITES).map(|n| create_ticket(&app, &user, "burst", n as f64 + 1.0));
    futures::future::join_all(writes).await;
    let created = r#"{service="tickets",subject="ticket:created"}"#;
    metrics_where(
        &app,
        &[
            (r#"events_outbox_pending{service="tickets"}"#, 0.0),
            (&format!("events_published_total{created}"), WRITES as f64),
        ],
    )
    .await;
}
