//! `spawn_app()`: the orders service on a free port, and a stand-in for the tickets service
//! that publishes ticket events on the test's bus.

use common::events::{EventBus, TicketCreated, TicketData, TicketUpdated};
use common::server::Service;
use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{TestApp, TestContext, TestUser, WAIT, eventually};

/// The orders service as its binary builds it, in `context`.
pub(crate) async fn build(context: &TestContext) -> Service {
    context.build::<orders::Config>().await
}

pub(crate) async fn spawn_app() -> TestApp {
    test_support::spawn_app::<orders::Config>().await
}

pub(crate) fn ticket(id: &str, version: i64, price: f64) -> TicketData {
    TicketData {
        id: id.to_owned(),
        version,
        title: format!("concert v{version}"),
        price,
        user_id: "seller".to_owned(),
        order_id: None,
    }
}

/// Publishes `ticket:created` for a new ticket and waits until the replica has it.
pub(crate) async fn replicated_ticket(app: &TestApp, bus: &EventBus, price: f64) -> String {
    let id = ObjectId::new().to_hex();
    bus.publish(&TicketCreated(ticket(&id, 0, price)))
        .await
        .unwrap();
    replica_at(app, &id, 0).await;
    id
}

pub(crate) async fn publish_update(bus: &EventBus, id: &str, version: i64, price: f64) {
    bus.publish(&TicketUpdated(ticket(id, version, price)))
        .await
        .unwrap();
}

/// Waits until the orders service's replica of the ticket reaches `version`.
pub(crate) async fn replica_at(app: &TestApp, id: &str, version: i64) -> Value {
    eventually(
        &format!("replica of {id} at version {version}"),
        WAIT,
        || async {
            let response = app.get(&format!("/api/orders/tickets/{id}"), None).await;
            (response.status == StatusCode::OK && response.body["version"] == version)
                .then_some(response.body)
        },
    )
    .await
}

pub(crate) async fn order(app: &TestApp, user: &TestUser, ticket_id: &str) -> Value {
    let response = app
        .post(
            "/api/orders",
            Some(&user.cookie),
            json!({"ticketId": ticket_id}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}
