//! The end of an order's life: expiration cancels it unless it was paid.

use common::events::{ExpirationComplete, PaymentCreated};
use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use test_support::{TestApp, eventually, fake_user};

use crate::helpers::{WAIT, order, replicated_ticket, spawn_app};

async fn status_is(app: &TestApp, cookie: &str, order_id: &str, status: &str) -> serde_json::Value {
    eventually(
        &format!("order {order_id} to be {status}"),
        WAIT,
        || async {
            let body = app
                .get(&format!("/api/orders/{order_id}"), Some(cookie))
                .await
                .body;
            (body["status"] == status).then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn expiration_cancels_an_unpaid_order_and_publishes_it() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 5.0).await;
    let buyer = fake_user();
    let created = order(&app, &buyer, &ticket_id).await;
    let id = created["id"].as_str().unwrap().to_owned();
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
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 5.0).await;
    let buyer = fake_user();
    let created = order(&app, &buyer, &ticket_id).await;
    let id = created["id"].as_str().unwrap().to_owned();
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
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_messages(), ["Cannot cancel a paid order"]);
    // The expiration is consumed (acked) without effect: wait until the consumer has no
    // pending message, then check.
    let stream = bus.jetstream().get_stream(bus.stream_name()).await.unwrap();
    eventually("the expiration to be handled", WAIT, || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer("orders-expiration-complete")
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
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
