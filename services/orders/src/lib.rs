//! The orders service: buyers place orders that hold a ticket until paid, cancelled or
//! expired. It keeps its own replica of tickets, built from versioned ticket events.

mod config;
mod listeners;
mod routes;
mod state;
mod store;

pub use config::Config;
pub use state::AppState;

use common::events::{ExpirationComplete, PaymentCreated, PaymentRefunded, TicketChanged};
use common::server::{Backend, HttpConfig, Launch, Service};

/// The service's routes (`/api/orders/*`) over the given state.
pub fn app(state: AppState) -> axum::Router {
    routes::router().with_state(state)
}

/// The OpenAPI 3.1 document of the service's routes, as served at `/api/orders/openapi.json`.
pub use routes::openapi;

impl Launch for Config {
    const NAME: &'static str = "orders";

    fn http(&self) -> &HttpConfig {
        &self.service.http
    }

    /// Connects to MongoDB and NATS and returns the routes, the readiness checks, the outbox
    /// relay and the listeners to run.
    async fn build(&self) -> anyhow::Result<Service> {
        let backend =
            Backend::connect::<Self>(&self.service.mongo, &self.nats, &[store::ORDERS]).await?;
        let state = state::State::new(&backend, self).await?;
        retire_consumers(&backend).await;
        let tickets = backend
            .listener::<TicketChanged, _>(listeners::TicketReplicaHandler(state.orders.clone()));
        let expired = backend
            .listener::<ExpirationComplete, _>(listeners::ExpirationHandler(state.orders.clone()));
        let payments = || listeners::PaymentHandler(state.orders.clone());
        let paid = backend.listener::<PaymentCreated, _>(payments());
        let refunded = backend.listener::<PaymentRefunded, _>(payments());
        Ok(backend
            .service(self.service.limit_writes(app(state)))
            .with_listener(tickets)
            .with_listener(expired)
            .with_listener(paid)
            .with_listener(refunded))
    }
}

/// Creations and updates of tickets are read on one consumer, in stream order (see
/// `TicketChanged`). The two consumers they had before would hold every ticket event forever:
/// remove them.
async fn retire_consumers(backend: &Backend) {
    let bus = &backend.bus;
    if let Ok(stream) = bus.jetstream().get_stream(bus.stream_name()).await {
        for retired in ["orders-ticket-created", "orders-ticket-updated"] {
            if stream.delete_consumer(retired).await.is_ok() {
                tracing::info!(consumer = retired, "removed a retired consumer");
            }
        }
    }
}
