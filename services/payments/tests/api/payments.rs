//! POST /api/payments: authorisation, refusals, success, and races.

use std::time::{Duration, SystemTime};

use common::events::{OrderCancelled, OrderCreated, OrderCreatedTicket, OrderStatus, TicketRef};
use futures::future::join_all;
use mongodb::bson::{DateTime, oid::ObjectId};
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::{TestApp, TestUser, WAIT, assert_one_created, eventually, fake_user};

pub(crate) async fn spawn_app() -> TestApp {
    test_support::spawn_app::<payments::Config>().await
}

/// Publishes `order:created` for `buyer` and waits until payments knows the order.
/// The order as payments' replica holds it (with its latest attempt), if it does.
pub(crate) async fn stored(app: &TestApp, order_id: &str) -> Option<mongodb::bson::Document> {
    app.context
        .database("payments")
        .await
        .collection::<mongodb::bson::Document>("orders")
        .find_one(mongodb::bson::doc! {"_id": ObjectId::parse_str(order_id).unwrap()})
        .await
        .unwrap()
}

pub(crate) async fn replicated_order(
    app: &TestApp,
    buyer: &TestUser,
    expires_in: Duration,
) -> String {
    let order = order_created(buyer, expires_in);
    app.context.bus().await.publish(&order).await.unwrap();
    let db = app.context.database("payments").await;
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let id = ObjectId::parse_str(&order.id).unwrap();
    eventually("the order in the payments replica", WAIT, || async {
        orders
            .find_one(mongodb::bson::doc! {"_id": id})
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;
    order.id
}

/// A new order of `buyer`'s, as orders publishes it.
fn order_created(buyer: &TestUser, expires_in: Duration) -> OrderCreated {
    OrderCreated {
        id: ObjectId::new().to_hex(),
        version: 0,
        status: OrderStatus::Created,
        user_id: buyer.id.clone(),
        expires_at: DateTime::from_system_time(SystemTime::now() + expires_in)
            .try_to_rfc3339_string()
            .unwrap(),
        ticket: OrderCreatedTicket {
            id: ObjectId::new().to_hex(),
            price: 19.99,
        },
    }
}

/// The `/metrics` series of payments' waits for orders that `outcome`.
fn order_waits(outcome: &str) -> String {
    format!(r#"work_done_total{{service="payments",work="order_wait",outcome="{outcome}"}}"#)
}

pub(crate) async fn pay(
    app: &TestApp,
    user: &TestUser,
    order_id: &str,
    token: &str,
) -> test_support::TestResponse {
    app.post(
        "/api/payments",
        Some(&user.cookie),
        json!({"token": token, "orderId": order_id}),
    )
    .await
}

#[tokio::test]
async fn paying_requires_a_session_and_a_valid_body() {
    let app = spawn_app().await;
    let body = json!({"token": "tok_visa", "orderId": ObjectId::new().to_hex()});
    app.assert_needs_session(Method::POST, "/api/payments", body)
        .await;
    let user = fake_user();
    for (body, field) in [
        (json!({"orderId": ObjectId::new().to_hex()}), "token"),
        (
            json!({"token": "", "orderId": ObjectId::new().to_hex()}),
            "token",
        ),
        (json!({"token": "tok_visa"}), "orderId"),
        (json!({"token": "tok_visa", "orderId": "nope"}), "orderId"),
    ] {
        let response = app
            .post("/api/payments", Some(&user.cookie), body.clone())
            .await;
        response.assert_bad_field(field, &body);
    }
}

#[tokio::test]
async fn an_unknown_order_is_404_and_someone_elses_is_401() {
    let app = spawn_app().await;
    let buyer = fake_user();
    // An id made an hour ago: its order would have arrived long since, so no wait.
    let made = (SystemTime::now() - Duration::from_secs(3600))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let mut old = ObjectId::new().bytes();
    old[..4].copy_from_slice(&u32::try_from(made.as_secs()).unwrap().to_be_bytes());
    let missing = pay(
        &app,
        &buyer,
        &ObjectId::from_bytes(old).to_hex(),
        "tok_visa",
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // A fresh id that never arrives: waited for, in vain.
    let never = pay(&app, &buyer, &ObjectId::new().to_hex(), "tok_visa").await;
    assert_eq!(never.status, StatusCode::NOT_FOUND);
    let body = test_support::metrics::scrape(&app).await;
    let sample = |series: &str| test_support::metrics::sample(&body, series);
    assert_eq!(
        sample(&order_waits("waiting")),
        Some(1.0),
        "only the fresh id waited"
    );
    assert_eq!(sample(&order_waits("missing")), Some(1.0));
    let order_id = replicated_order(&app, &buyer, Duration::from_secs(900)).await;
    let stranger = pay(&app, &fake_user(), &order_id, "tok_visa").await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_payment_sent_before_its_order_reached_payments_waits_for_it() {
    let app = spawn_app().await;
    let buyer = fake_user();
    let order = order_created(&buyer, Duration::from_secs(900));
    let bus = app.context.bus().await;
    let (paid, ()) = tokio::join!(pay(&app, &buyer, &order.id, "tok_visa"), async {
        // Published only once the payment is known to be waiting for it.
        test_support::metrics::metrics_where(&app, &[(&order_waits("waiting"), 1.0)]).await;
        bus.publish(&order).await.unwrap();
    });
    assert_eq!(paid.status, StatusCode::CREATED);
    test_support::metrics::metrics_where(&app, &[(&order_waits("arrived"), 1.0)]).await;
}

#[tokio::test]
async fn a_valid_card_pays_once_and_publishes_payment_created() {
    let app = spawn_app().await;
    let buyer = fake_user();
    let order_id = replicated_order(&app, &buyer, Duration::from_secs(900)).await;
    let paid = pay(&app, &buyer, &order_id, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    let payment_id = paid.body["id"].as_str().unwrap().to_owned();
    assert_eq!(paid.body.as_object().unwrap().len(), 1);

    let again = pay(&app, &buyer, &order_id, "tok_visa").await;
    again.assert_error(StatusCode::BAD_REQUEST, "Order already paid");

    let event = eventually("payment:created", WAIT, || async {
        app.context
            .events()
            .await
            .into_iter()
            .find(|(s, _)| s == "payment:created")
    })
    .await;
    assert_eq!(event.1["id"], payment_id.as_str());
    assert_eq!(event.1["orderId"], order_id.as_str());
    assert!(event.1["stripeId"].as_str().unwrap().starts_with("ch_"));
}

#[tokio::test]
async fn a_declined_card_is_400_with_the_reason_and_another_card_may_follow() {
    let app = spawn_app().await;
    let buyer = fake_user();
    let order_id = replicated_order(&app, &buyer, Duration::from_secs(900)).await;
    let declined = pay(&app, &buyer, &order_id, "tok_chargeDeclined").await;
    declined.assert_error(StatusCode::BAD_REQUEST, "Your card was declined.");
    assert_eq!(declined.body["errors"][0]["field"], "token");
    let paid = pay(&app, &buyer, &order_id, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_cancelled_or_expired_order_cannot_be_paid() {
    let app = spawn_app().await;
    let buyer = fake_user();
    let order_id = replicated_order(&app, &buyer, Duration::from_secs(900)).await;
    let bus = app.context.bus().await;
    let cancelled = OrderCancelled {
        id: order_id.clone(),
        version: 1,
        ticket: TicketRef {
            id: ObjectId::new().to_hex(),
        },
    };
    bus.publish(&cancelled).await.unwrap();
    // Paying while the cancellation is on its way would race it (a charge, then a refund):
    // the one attempt goes once payments' replica holds the order cancelled.
    eventually("the cancellation to reach payments", WAIT, || async {
        let order = stored(&app, &order_id).await?;
        (order.get_str("status").ok()? == OrderStatus::Cancelled.as_str()).then_some(())
    })
    .await;
    let refused = pay(&app, &buyer, &order_id, "tok_visa").await;
    refused.assert_error(StatusCode::BAD_REQUEST, "Cannot pay for a cancelled order");

    // Past expiresAt: refused even though no cancellation arrived.
    let expired = replicated_order(&app, &buyer, Duration::ZERO).await;
    let response = pay(&app, &buyer, &expired, "tok_visa").await;
    response.assert_error(StatusCode::BAD_REQUEST, "Order has expired");
}

#[tokio::test]
async fn concurrent_attempts_for_one_order_give_exactly_one_payment() {
    let app = spawn_app().await;
    let buyer = fake_user();
    let order_id = replicated_order(&app, &buyer, Duration::from_secs(900)).await;
    let attempts = (0..10).map(|_| pay(&app, &buyer, &order_id, "tok_visa"));
    let responses = join_all(attempts).await;
    let refused = assert_one_created(&responses);
    assert!(refused.iter().all(|r| r.status == StatusCode::BAD_REQUEST));
    let order = app
        .context
        .database("payments")
        .await
        .collection::<mongodb::bson::Document>("orders")
        .find_one(mongodb::bson::doc! {"_id": ObjectId::parse_str(&order_id).unwrap()})
        .await
        .unwrap()
        .unwrap();
    let attempt = order.get_document("payment").unwrap();
    assert_eq!(attempt.get_str("state").unwrap(), "succeeded");
    assert_eq!(
        attempt.get_i32("number").unwrap(),
        1,
        "one attempt, one charge"
    );
}

#[tokio::test]
async fn a_stranger_learns_nothing_of_the_order_and_charges_nothing() {
    let app = spawn_app().await;
    let buyer = fake_user();
    let stranger = fake_user();
    let order_id = replicated_order(&app, &buyer, Duration::from_secs(900)).await;
    let refused = pay(&app, &stranger, &order_id, "tok_visa").await;
    refused.assert_error(StatusCode::UNAUTHORIZED, "Not authorized");
    let order = stored(&app, &order_id).await.unwrap();
    assert!(
        !order.contains_key("payment"),
        "a refused payment claimed the order: {order}"
    );

    // The owner pays; the stranger still gets 401, not the owner's "Order already paid".
    assert_eq!(
        pay(&app, &buyer, &order_id, "tok_visa").await.status,
        StatusCode::CREATED
    );
    let after = pay(&app, &stranger, &order_id, "tok_visa").await;
    after.assert_error(StatusCode::UNAUTHORIZED, "Not authorized");
}
