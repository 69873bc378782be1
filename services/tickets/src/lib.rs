//! The tickets service: sellers list and edit tickets; orders reserve and release them.
//!
//! Every change writes its event into the ticket's document; the outbox relay publishes them.

mod config;
mod domain;
mod listeners;
mod pages;
mod routes;
mod state;
mod store;

pub use config::Config;
pub use state::AppState;

use common::events::{EventBus, Listener, Outbox};
use common::health::ReadinessCheck;
use common::server::{BackgroundTask, Service};

/// The service's routes (`/api/tickets/*`) over the given state.
pub fn app(state: AppState) -> axum::Router {
    routes::router().with_state(state)
}

/// The OpenAPI 3.1 document of the service's routes, as served at `/api/tickets/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::openapi()
}

/// Connects to MongoDB and NATS, prepares indexes and streams, and returns the routes, the
/// readiness checks, the outbox relay and the listeners to run.
pub async fn build(config: &Config) -> anyhow::Result<Service> {
    let db = config.service.mongo.connect("tickets").await?;
    let bus = EventBus::connect(&config.nats, "tickets").await?;
    let outbox = Outbox::new(&db, &[store::TICKETS]);
    outbox.ensure_indexes().await?;
    let state = AppState::new(&db, &config.service.sessions, outbox.clone()).await?;
    let checks = vec![
        ReadinessCheck::mongo("tickets-mongo", db),
        bus.readiness_check(),
    ];
    let reserve = Listener::new(
        bus.clone(),
        "tickets",
        listeners::OrderCreatedHandler(state.tickets.clone()),
    );
    let release = Listener::new(
        bus.clone(),
        "tickets",
        listeners::OrderCancelledHandler(state.tickets.clone()),
    );
    let store = state.tickets.clone();
    let follow_changes: BackgroundTask = Box::new(move |shutdown| {
        Box::pin(async move { store.pages().follow_changes(&store, shutdown).await })
    });
    Ok(Service::new("tickets", app(state), checks)
        .with_task("list-page-changes", follow_changes)
        .with_outbox(outbox, bus)
        .with_listener(reserve)
        .with_listener(release))
}
