//! `/metrics` of the whole stack on one address, as under `ticketing up`: one document with
//! every service's series, each event series labelled with its service.

use common::metrics::names::{
    EVENTS_ACKED, EVENTS_OUTBOX_PENDING, EVENTS_PUBLISHED, HTTP_REQUESTS, series,
};
use reqwest::StatusCode;
use serde_json::json;
use test_support::metrics::{metrics_where, sample};
use test_support::{WAIT, eventually};

use crate::spawn_stack;

#[tokio::test]
async fn one_metrics_document_covers_every_service() {
    let app = spawn_stack().await;
    let (_seller, buyer, id) = crate::seller_buyer_and_ticket(&app).await;
    eventually("the ticket to reach the orders replica", WAIT, || async {
        let response = app
            .post("/api/orders", Some(&buyer.cookie), json!({"ticketId": id}))
            .await;
        (response.status == StatusCode::CREATED).then_some(())
    })
    .await;

    let http = |route, count| {
        let labels = [("route", route), ("method", "POST"), ("status", "201")];
        (series(HTTP_REQUESTS, &labels), count)
    };
    let published = |service, subject| {
        let labels = [("service", service), ("subject", subject)];
        (series(EVENTS_PUBLISHED, &labels), 1.0)
    };
    let acked = |service, consumer, count| {
        let labels = [("service", service), ("consumer", consumer)];
        (series(EVENTS_ACKED, &labels), count)
    };
    let expected = [
        http("/api/users/signup", 2.0),
        http("/api/tickets", 1.0),
        http("/api/orders", 1.0),
        published("tickets", "ticket:created"),
        published("orders", "order:created"),
        // ticket:created, then ticket:updated (reserved by tickets), on one consumer.
        acked("orders", "orders-ticket-created-and-ticket-updated", 2.0),
        acked("tickets", "tickets-order-created", 1.0),
        acked("payments", "payments-order-created", 1.0),
        acked("expiration", "expiration-order-created", 1.0),
    ];
    let expected: Vec<(&str, f64)> = expected
        .iter()
        .map(|(series, value)| (series.as_str(), *value))
        .collect();
    let body = metrics_where(&app, &expected).await;
    for service in ["tickets", "orders", "payments", "expiration"] {
        let backlog = series(EVENTS_OUTBOX_PENDING, &[("service", service)]);
        assert!(sample(&body, &backlog).is_some(), "{backlog} in {body}");
    }
    // One header per metric, whatever the number of services.
    assert_eq!(
        body.matches(&format!("# TYPE {EVENTS_ACKED} counter"))
            .count(),
        1,
        "{body}"
    );
}
