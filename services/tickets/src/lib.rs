//! The tickets service: sellers list and edit tickets; orders reserve and release them.
//!
//! Every change writes its event into the ticket's document; the outbox relay publishes them.

mod config;
mod domain;
mod known;
mod list_cache;
mod listeners;
mod orders_seen;
mod routes;
mod state;
mod store;

pub use config::Config;
pub use state::AppState;

use common::server::{Backend, HttpConfig, Launch, Service};
use common::task::background;

/// The service's routes (`/api/tickets/*`) over the given state.
pub fn app(state: AppState) -> axum::Router {
    routes::router().with_state(state)
}

/// The OpenAPI 3.1 document of the service's routes, as served at `/api/tickets/openapi.json`.
pub use routes::openapi;

impl Launch for Config {
    const NAME: &'static str = "tickets";

    fn http(&self) -> &HttpConfig {
        &self.service.http
    }

    /// Connects to MongoDB and NATS and returns the routes, the readiness checks, the outbox
    /// relay, the listeners and the list cache's event follower to run.
    async fn build(&self) -> anyhow::Result<Service> {
        let backend =
            Backend::connect::<Self>(&self.service.mongo, &self.nats, &[store::TICKETS]).await?;
        let state = state::State::new(&backend, &self.service.sessions).await?;
        let reserve = backend.listener(listeners::OrderCreatedHandler(state.tickets.clone()));
        let release = backend.listener(listeners::OrderCancelledHandler(state.tickets.clone()));
        let (cache, bus) = (state.tickets.list_cache().clone(), backend.bus.clone());
        let follow_events =
            background(move |shutdown| async move { cache.follow_events(bus, shutdown).await });
        Ok(backend
            .service(self.service.limit_writes(app(state)))
            .with_task("list-cache-events", follow_events)
            .with_listener(reserve)
            .with_listener(release))
    }
}
