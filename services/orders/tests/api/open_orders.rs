//! One user holds at most `MAX_OPEN_ORDERS_PER_USER` orders created or awaiting payment: the
//! next is refused with 400 `Too many open orders` and nothing is created, racing or not, and a
//! cancelled order frees its slot.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use test_support::fake_user;

use crate::helpers::{order, replicated_ticket, spawn_app};

/// The default.
const MAX_OPEN: usize = 10;

#[tokio::test]
async fn the_eleventh_open_order_is_refused_and_a_cancel_frees_a_slot() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let buyer = fake_user();
    let mut tickets = Vec::new();
    for _ in 0..=MAX_OPEN + 1 {
        tickets.push(replicated_ticket(&app, &bus, 5.0).await);
    }
    let mut orders = Vec::new();
    for ticket in &tickets[..MAX_OPEN] {
        orders.push(order(&app, &buyer, ticket).await);
    }
    let body = json!({"ticketId": tickets[MAX_OPEN]});
    let refused = app
        .post("/api/orders", Some(&buyer.cookie), body.clone())
        .await;
    refused.assert_error(StatusCode::BAD_REQUEST, "Too many open orders");
    let stored = app
        .context
        .database("orders")
        .await
        .collection::<mongodb::bson::Document>("orders")
        .count_documents(mongodb::bson::doc! { "userId": &buyer.id })
        .await
        .unwrap();
    assert_eq!(stored, MAX_OPEN as u64, "the refused order was created");
    // Another buyer is not affected.
    order(&app, &fake_user(), &tickets[MAX_OPEN + 1]).await;

    let first = orders[0]["id"].as_str().unwrap();
    let cancelled = app
        .delete(&format!("/api/orders/{first}"), Some(&buyer.cookie))
        .await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    let again = app.post("/api/orders", Some(&buyer.cookie), body).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}

#[tokio::test]
async fn racing_orders_of_one_user_never_exceed_the_limit() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let buyer = fake_user();
    let mut tickets = Vec::new();
    for _ in 0..MAX_OPEN * 2 {
        tickets.push(replicated_ticket(&app, &bus, 5.0).await);
    }
    let attempts = tickets.iter().map(|ticket| {
        app.post(
            "/api/orders",
            Some(&buyer.cookie),
            json!({"ticketId": ticket}),
        )
    });
    let responses = join_all(attempts).await;
    let created = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(created, MAX_OPEN);
    for refused in responses.iter().filter(|r| r.status != StatusCode::CREATED) {
        refused.assert_error(StatusCode::BAD_REQUEST, "Too many open orders");
    }
}
