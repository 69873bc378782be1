//! The orders service: buyers place orders that hold a ticket until paid, cancelled or
//! expired. It keeps its own replica of tickets, built from versioned ticket events.

mod config;
mod listeners;
mod routes;
mod state;
mod store;

pub use config::Config;
pub use state::AppState;

use common::events::{
    EventBus, ExpirationComplete, Listener, Outbox, PaymentCreated, TicketChanged,
};
use common::health::ReadinessCheck;
use common::server::Service;

/// The service's routes (`/api/orders/*`) over the given state.
pub fn app(state: AppState) -> axum::Router {
    routes::router().with_state(state)
}

/// The OpenAPI 3.1 document of the service's routes, as served at `/api/orders/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::openapi()
}

/// Connects to MongoDB and NATS, prepares indexes and streams, and returns the routes, the
/// readiness checks, the outbox relay and the listeners to run.
pub async fn build(config: &Config) -> anyhow::Result<Service> {
    let db = config.service.mongo.connect("orders").await?;
    let bus = EventBus::connect(&config.nats, "orders").await?;
    let outbox = Outbox::new(&db, &[store::ORDERS]);
    outbox.ensure_indexes().await?;
    let state = AppState::new(&db, config, outbox.clone()).await?;
    let checks = vec![
        ReadinessCheck::mongo("orders-mongo", db),
        bus.readiness_check(),
    ];
    // Creations and updates on one consumer, in stream order (see `TicketChanged`). The two
    // consumers they had before would hold every ticket event forever: remove them.
    if let Ok(stream) = bus.jetstream().get_stream(bus.stream_name()).await {
        for retired in ["orders-ticket-created", "orders-ticket-updated"] {
            if stream.delete_consumer(retired).await.is_ok() {
                tracing::info!(consumer = retired, "removed a retired consumer");
            }
        }
    }
    let tickets = Listener::<TicketChanged, _>::new(
        bus.clone(),
        "orders",
        listeners::TicketReplicaHandler(state.orders.clone()),
    );
    let expired = Listener::<ExpirationComplete, _>::new(
        bus.clone(),
        "orders",
        listeners::ExpirationHandler(state.orders.clone()),
    );
    let paid = Listener::<PaymentCreated, _>::new(
        bus.clone(),
        "orders",
        listeners::PaymentHandler(state.orders.clone()),
    );
    Ok(Service::new("orders", app(state), checks)
        .with_outbox(outbox, bus)
        .with_listener(tickets)
        .with_listener(expired)
        .with_listener(paid))
}
