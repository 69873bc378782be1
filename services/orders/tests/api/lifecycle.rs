//! The end of an order's life: expiration cancels it unless it was paid.

use common::events::{EventBus, ExpirationComplete, PaymentCreated};
use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use test_support::{TestApp, TestUser, WAIT, eventually, fake_user};

use crate::helpers::{order, replicated_ticket, spawn_app};

/// The service with one order, by a fake buyer, of a replicated ticket at 5, and the bus of
/// its namespace. Returns the order's id.
async fn spawn_with_order() -> (TestApp, EventBus, TestUser, String) {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 5.0).await;
    let buyer = fake_user();
    let created = order(&app, &buyer, &ticket_id).await;
    let id = created["id"].as_str().unwrap().to_owned();
    (app, bus, buyer, id)
}

async fn status_is(app: &TestApp, cookie: &str, order_id: &str, status: &str) -> serde_json::Value {
    let what = format!("order {order_id} to be {status}");
    app.get_until(
        &format!("/api/orders/{order_id}"),
        Some(cookie),
        &what,
        |body| body["status"] == status,
    )
    .await
}

#[tokio::test]
async fn expiration_cancels_an_unpaid_order_and_publishes_it() {
    let (app, bus, buyer, id) = spawn_with_order().await;
    bus.publish(&ExpirationComplete {
        order_id: id.clone(),
    })
    .await
    .unwrap();
    let cancelled = status_is(&app, &buyer.cookie, &id, "cancelled").await;
    assert_eq!(cancelled["version"], 1);
    eventually("order:cancelled", WAIT, || async {
        let events = app.context.events().await;
        events
            .into_iter()
            .find(|(s, p)| s == "order:cancelled" && p["id"] == id.as_str())
    })
    .await;
}

#[tokio::test]
async fn a_paid_order_is_complete_and_never_cancelled() {
    let (app, bus, buyer, id) = spawn_with_order().await;
    let payment = PaymentCreated {
        id: ObjectId::new().to_hex(),
        order_id: id.clone(),
        stripe_id: "ch_test".to_owned(),
    };
    bus.publish(&payment).await.unwrap();
    let complete = status_is(&app, &buyer.cookie, &id, "complete").await;
    assert_eq!(complete["version"], 1);

    // Neither the expiration nor the owner can cancel it.
    bus.publish(&ExpirationComplete {
        order_id: id.clone(),
    })
    .await
    .unwrap();
    let refused = app
        .delete(&format!("/api/orders/{id}"), Some(&buyer.cookie))
        .await;
    refused.assert_error(StatusCode::BAD_REQUEST, "Cannot cancel a paid order");
    // The expiration is consumed (acked) without effect: wait until the consumer has no
    // pending message, then check.
    app.context
        .consumer_settled("orders-expiration-complete", false)
        .await;
    let body = app
        .get(&format!("/api/orders/{id}"), Some(&buyer.cookie))
        .await
        .body;
    assert_eq!(body["status"], "complete");
    assert_eq!(body["version"], 1);
    let cancellations = app
        .context
        .events()
        .await
        .into_iter()
        .filter(|(s, _)| s == "order:cancelled")
        .count();
    assert_eq!(cancellations, 0);
}
