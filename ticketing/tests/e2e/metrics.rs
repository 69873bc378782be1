//! `/metrics` of the whole stack on one address, as under `ticketing up`: one document with
//! every service's series, each event series labelled with its service.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use test_support::eventually;

use crate::spawn_stack;

const WAIT: Duration = Duration::from_secs(10);

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

    let expected = [
        r#"http_requests_total{route="/api/users/signup",method="POST",status="201"} 2"#,
        r#"http_requests_total{route="/api/tickets",method="POST",status="201"} 1"#,
        r#"http_requests_total{route="/api/orders",method="POST",status="201"} 1"#,
        r#"events_published_total{service="tickets",subject="ticket:created"} 1"#,
        r#"events_published_total{service="orders",subject="order:created"} 1"#,
        // ticket:created, then ticket:updated (reserved by tickets), on one consumer.
        r#"events_acked_total{service="orders",consumer="orders-ticket-created-and-ticket-updated"} 2"#,
        r#"events_acked_total{service="tickets",consumer="tickets-order-created"} 1"#,
        r#"events_acked_total{service="payments",consumer="payments-order-created"} 1"#,
        r#"events_acked_total{service="expiration",consumer="expiration-order-created"} 1"#,
    ];
    let body = eventually(&format!("{expected:#?} in /metrics"), WAIT, || async {
        let response = app
            .http()
            .get(format!("{}/metrics", app.address))
            .send()
            .await
            .unwrap();
        let body = response.text().await.unwrap();
        let lines: Vec<&str> = body.lines().collect();
        expected
            .iter()
            .all(|series| lines.contains(series))
            .then_some(body)
    })
    .await;
    for service in ["tickets", "orders", "payments", "expiration"] {
        let backlog = format!(r#"events_outbox_pending{{service="{service}"}} "#);
        assert!(body.contains(&backlog), "{backlog} in {body}");
    }
    // One header per metric, whatever the number of services.
    assert_eq!(
        body.matches("# TYPE events_acked_total counter").count(),
        1,
        "{body}"
    );
}
