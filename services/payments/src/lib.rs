//! The payments service: buyers pay for their orders; a replica of orders (from order
//! created/cancelled) says what may be paid, a gateway charges the card, and
//! `payment:created` completes the order.

mod config;
pub mod gateway;
mod listeners;
mod routes;
mod state;
mod store;

pub use config::Config;
pub use state::AppState;

use common::events::{EventBus, Listener, OrderCancelled, OrderCreated, Outbox};
use common::health::ReadinessCheck;
use common::server::Service;

/// The service's routes (`/api/payments`) over the given state.
pub fn app(state: AppState) -> axum::Router {
    routes::router().with_state(state)
}

/// The OpenAPI 3.1 document of the service's routes, as served at `/api/payments/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::openapi()
}

/// Connects to MongoDB and NATS, prepares indexes and streams, and returns the routes, the
/// readiness checks, the outbox relay and the listeners to run.
pub async fn build(config: &Config) -> anyhow::Result<Service> {
    let db = config.service.mongo.connect("payments").await?;
    let bus = EventBus::connect(&config.nats, "payments").await?;
    let outbox = Outbox::new(&db, &[store::PAYMENTS]);
    outbox.ensure_indexes().await?;
    let state = AppState::new(&db, config, outbox.clone()).await?;
    let checks = vec![
        ReadinessCheck::mongo("payments-mongo", db),
        bus.readiness_check(),
    ];
    let created = Listener::<OrderCreated, _>::new(
        bus.clone(),
        "payments",
        listeners::OrderReplicaHandler(state.payments.clone()),
    );
    let cancelled = Listener::<OrderCancelled, _>::new(
        bus.clone(),
        "payments",
        listeners::OrderReplicaHandler(state.payments.clone()),
    );
    Ok(Service::new("payments", app(state), checks)
        .with_outbox(outbox, bus)
        .with_listener(created)
        .with_listener(cancelled))
}
