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

use common::events::{OrderCancelled, OrderCreated};
use common::server::{Backend, HttpConfig, Launch, Service};

/// The service's routes (`/api/payments`) over the given state.
pub fn app(state: AppState) -> axum::Router {
    routes::router().with_state(state)
}

/// The OpenAPI 3.1 document of the service's routes, as served at `/api/payments/openapi.json`.
pub use routes::openapi;

impl Launch for Config {
    const NAME: &'static str = "payments";

    fn http(&self) -> &HttpConfig {
        &self.service.http
    }

    /// Connects to MongoDB and NATS and returns the routes, the readiness checks, the outbox
    /// relay and the listeners of the replica of orders to run.
    async fn build(&self) -> anyhow::Result<Service> {
        let backend =
            Backend::connect::<Self>(&self.service.mongo, &self.nats, &[store::PAYMENTS]).await?;
        let state = AppState::new(&backend, self).await?;
        let replica = || listeners::OrderReplicaHandler(state.payments.clone());
        let created = backend.listener::<OrderCreated, _>(replica());
        let cancelled = backend.listener::<OrderCancelled, _>(replica());
        Ok(backend
            .service(self.service.limit_writes(app(state)))
            .with_listener(created)
            .with_listener(cancelled))
    }
}
