//! The payments service: buyers pay for their orders; a replica of orders (from order
//! created/cancelled) says what may be paid, a gateway charges the card, and
//! `payment:created` completes the order. The saga (`saga/`) guarantees every attempt ends
//! paid or with no charge left standing: unknown outcomes are reconciled with the gateway,
//! and a charge that lands on a cancelled order is refunded (`payment:refunded`).

mod config;
pub mod gateway;
mod listeners;
mod routes;
mod saga;
mod state;
mod store;

pub use config::{Config, GatewayChoice, SagaConfig};
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
    /// relay, the saga's worker and the listeners of the replica of orders to run.
    async fn build(&self) -> anyhow::Result<Service> {
        let backend = Backend::connect::<Self>(
            &self.service.mongo,
            &self.nats,
            &[store::ORDERS, store::LEGACY_PAYMENTS],
        )
        .await?;
        let state = state::State::new(&backend, self).await?;
        let saga = state.saga.clone();
        let replica = || listeners::OrderReplicaHandler(saga.clone());
        let created = backend.listener::<OrderCreated, _>(replica());
        let cancelled = backend.listener::<OrderCancelled, _>(replica());
        Ok(backend
            .service(self.service.limit_writes(app(state)))
            .with_work(&saga.work)
            .with_task("payment-saga", saga::task(saga.clone()))
            .with_listener(created)
            .with_listener(cancelled))
    }
}
