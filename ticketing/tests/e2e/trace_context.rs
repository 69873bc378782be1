//! W3C trace context: one trace covers a request and the events it causes in other services.

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{TestApp, WAIT, eventually};

use crate::spawn_stack;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn order_created_and_the_ticket_reserved_by_tickets_are_one_trace() {
    let app = spawn_stack().await;
    let (seller, buyer, ticket_id) = crate::seller_buyer_and_ticket(&app).await;

    let caller = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let order = eventually("the ticket to reach the orders replica", WAIT, || async {
        let response = TestApp::read(
            app.http()
                .post(format!("{}/api/orders", app.address))
                .header("cookie", &buyer.cookie)
                .header("traceparent", &caller)
                .json(&json!({"ticketId": ticket_id})),
        )
        .await;
        (response.status == StatusCode::CREATED).then_some(response.body)
    })
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();

    // order:created comes from orders, within the caller's trace…
    let created = message_where(&app, "order:created", |p| p["id"] == order_id).await;
    // …and tickets, handling it, publishes ticket:updated (reserved) in the same trace.
    let reserved = message_where(&app, "ticket:updated", |p| p["orderId"] == order_id).await;
    for (what, headers) in [("order:created", &created), ("ticket:updated", &reserved)] {
        let traceparent = headers
            .get("traceparent")
            .unwrap_or_else(|| panic!("{what} has no traceparent: {headers:?}"));
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{what}: {traceparent}");
        assert_eq!(parts[1], TRACE_ID, "{what} is in another trace");
        assert_ne!(
            parts[2], "00f067aa0ba902b7",
            "{what} names the caller's span instead of its own"
        );
    }
    assert_ne!(created.get("traceparent"), reserved.get("traceparent"));

    // A request without a trace context starts its own trace, unrelated to the last one.
    let other = app
        .post(
            "/api/tickets",
            Some(&seller.cookie),
            json!({"title": "other", "price": 5}),
        )
        .await
        .body;
    let other_id = other["id"].as_str().unwrap().to_owned();
    let listed = message_where(&app, "ticket:created", |p| p["id"] == other_id).await;
    let traceparent = &listed["traceparent"];
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    assert!(!traceparent.contains(TRACE_ID), "{traceparent}");
}

/// The headers of the first event named `subject` whose payload matches.
async fn message_where(
    app: &TestApp,
    subject: &str,
    matches: impl Fn(&Value) -> bool,
) -> std::collections::HashMap<String, String> {
    let suffix = format!(".events.{}", subject.replace(':', "."));
    eventually(&format!("{subject} to be published"), WAIT, || async {
        app.context
            .stream_messages(&format!("{}_events", app.context.namespace))
            .await
            .into_iter()
            .find(|m| m.subject.ends_with(&suffix) && matches(&m.payload))
            .map(|m| m.headers)
    })
    .await
}
