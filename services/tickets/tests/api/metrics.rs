//! `/metrics` of the tickets service: requests by route template, the events it publishes and
//! consumes, and the backlogs read at scrape time.

use common::metrics::names::*;
use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use test_support::fake_user;
use test_support::metrics::metrics_where;

use crate::helpers::{order_created, publish_poison, spawn_app, spawn_with_ticket};

#[tokio::test]
async fn metrics_count_requests_by_route_and_events_by_subject_and_consumer() {
    let (app, bus, _, id) = spawn_with_ticket().await;
    let id = id.as_str();
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
    publish_poison(&bus).await;
    let order = order_created(&ObjectId::new().to_hex(), id);
    bus.publish(&order).await.unwrap();

    let reserve = r#"{service="tickets",consumer="tickets-order-created"}"#;
    let release = r#"{service="tickets",consumer="tickets-order-cancelled"}"#;
    let created = r#"{service="tickets",subject="ticket:created"}"#;
    let updated = r#"{service="tickets",subject="ticket:updated"}"#;
    let http = |name: &str, route, method, status| {
        series(
            name,
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    let body = metrics_where(
        &app,
        &[
            (&http(HTTP_REQUESTS, "/api/tickets", "POST", "201"), 1.0),
            (&http(HTTP_REQUESTS, "/api/tickets/{id}", "GET", "200"), 2.0),
            (&http(HTTP_REQUESTS, "/api/tickets/{id}", "GET", "404"), 1.0),
            (&http(HTTP_REQUESTS, "unmatched", "GET", "404"), 1.0),
            (
                &http(
                    &format!("{HTTP_REQUEST_DURATION}_count"),
                    "/api/tickets",
                    "POST",
                    "201",
                ),
                1.0,
            ),
            (&format!("{EVENTS_PUBLISHED}{created}"), 1.0),
            (&format!("{EVENTS_PUBLISHED}{updated}"), 1.0),
            (&format!("{EVENTS_PUBLISH_FAILURES}{created}"), 0.0),
            (&format!("{EVENTS_CONSUMED}{reserve}"), 2.0),
            (&format!("{EVENTS_ACKED}{reserve}"), 1.0),
            (&format!("{EVENTS_RETRIED}{reserve}"), 0.0),
            (&format!("{EVENTS_DEAD_LETTERED}{reserve}"), 1.0),
            (&format!("{EVENTS_CONSUMED}{release}"), 0.0),
            (
                &format!(r#"{EVENTS_OUTBOX_PENDING}{{service="tickets"}}"#),
                0.0,
            ),
            (&format!("{EVENTS_CONSUMER_PENDING}{reserve}"), 0.0),
            (&format!("{EVENTS_CONSUMER_ACK_PENDING}{reserve}"), 0.0),
            (&format!("{EVENTS_CONSUMER_PENDING}{release}"), 0.0),
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
        .get(format!("{}{}", app.address, common::metrics::PATH))
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
    let writes = (0..WRITES).map(|n| app.create_ticket(&user, "burst", n as f64 + 1.0));
    futures::future::join_all(writes).await;
    test_support::metrics::assert_published_exactly(
        &app,
        "tickets",
        "ticket:created",
        WRITES as u64,
    )
    .await;
}
