//! `spawn_app()`: the tickets service on a free port with its own database and namespace, and
//! the order events tests publish to it.

use bytes::Bytes;
use common::events::{EventBus, OrderCreated, OrderCreatedTicket, OrderStatus, Subject};
use common::server::Service;
use test_support::{TestApp, TestContext, TestUser, fake_user};

/// The tickets service as its binary builds it, in `context`.
pub(crate) async fn build(context: &TestContext) -> Service {
    context.build::<tickets::Config>().await
}

pub(crate) async fn spawn_app() -> TestApp {
    test_support::spawn_app::<tickets::Config>().await
}

/// The service with one ticket on sale ("concert" at 5) by a fake user, and the bus of its
/// namespace: the start of each test of what orders do to a ticket. Returns the ticket's id.
pub(crate) async fn spawn_with_ticket() -> (TestApp, EventBus, TestUser, String) {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let user = fake_user();
    let ticket = app.create_ticket(&user, "concert", 5.0).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    (app, bus, user, id)
}

/// `order:created` for `ticket_id`, as orders publishes it.
pub(crate) fn order_created(order_id: &str, ticket_id: &str) -> OrderCreated {
    OrderCreated {
        id: order_id.to_owned(),
        version: 0,
        status: OrderStatus::Created,
        user_id: "buyer".to_owned(),
        expires_at: "2030-01-01T00:00:00.000Z".to_owned(),
        ticket: OrderCreatedTicket {
            id: ticket_id.to_owned(),
            price: 10.0,
        },
    }
}

/// Publishes a message on `order:created` that is not JSON: one the listener can only
/// dead-letter.
pub(crate) async fn publish_poison(bus: &EventBus) {
    bus.publish_bytes(
        bus.subject(Subject::OrderCreated),
        async_nats::HeaderMap::new(),
        Bytes::from_static(b"{not json"),
    )
    .await
    .unwrap();
}
