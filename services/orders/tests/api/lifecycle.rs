//! The end of an order's life: expiration cancels it unless it was paid.

use common::events::{EventBus, ExpirationComplete, PaymentCreated};
use mongodb::bson::{Document, doc, oid::ObjectId};
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

/// What another orders process does to the order `id` at version 0: `set`, behind this
/// process's back.
async fn changed_elsewhere(app: &TestApp, id: &str, set: Document) {
    let written = app
        .context
        .database("orders")
        .await
        .collection::<Document>("orders")
        .update_one(
            doc! { "_id": ObjectId::parse_str(id).unwrap(), "version": 0_i64 },
            doc! { "$set": set },
        )
        .await
        .unwrap();
    assert_eq!(written.matched_count, 1);
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

#[tokio::test]
async fn a_payment_for_an_order_cancelled_behind_this_process_shows_refunding_and_stays_cancelled()
{
    let (app, bus, buyer, id) = spawn_with_order().await;
    // Another process cancelled it (this one still remembers it open, as it created it).
    changed_elsewhere(
        &app,
        &id,
        doc! { "status": "cancelled", "active": false, "openSlot": null, "version": 1_i64 },
    )
    .await;
    bus.publish(&PaymentCreated {
        id: ObjectId::new().to_hex(),
        order_id: id.clone(),
        stripe_id: "ch_late".to_owned(),
    })
    .await
    .unwrap();
    let shown = app
        .get_until(
            &format!("/api/orders/{id}"),
            Some(&buyer.cookie),
            "the late payment shown as refunding",
            |body| body["payment"]["status"] == "refunding",
        )
        .await;
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert_eq!(shown["version"], 1, "{shown}");
}

#[tokio::test]
async fn an_order_paid_behind_this_process_is_not_cancelled_from_what_it_remembers() {
    let (app, _bus, buyer, id) = spawn_with_order().await;
    // Another process completed it (this one still remembers it open, as it created it).
    changed_elsewhere(
        &app,
        &id,
        doc! { "status": "complete", "openSlot": null, "version": 1_i64 },
    )
    .await;
    let refused = app
        .delete(&format!("/api/orders/{id}"), Some(&buyer.cookie))
        .await;
    refused.assert_error(StatusCode::BAD_REQUEST, "Cannot cancel a paid order");
    let body = app
        .get(&format!("/api/orders/{id}"), Some(&buyer.cookie))
        .await
        .body;
    assert_eq!(body["status"], "complete", "{body}");
    assert_eq!(body["version"], 1, "{body}");
}
