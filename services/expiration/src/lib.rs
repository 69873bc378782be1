//! The expiration service: every order gets an expiration at its `expiresAt`; when it comes,
//! `expiration:complete` is published.
//!
//! The schedule lives in MongoDB, not in memory: an expiration scheduled before a crash fires
//! after the restart (within a second of the service being back), and several replicas share
//! one schedule without firing anything twice.

mod config;
mod listeners;
mod scheduler;
mod store;
mod wake;

pub use config::Config;

use axum::Router;
use common::server::{Backend, HttpConfig, Launch, Service};

impl Launch for Config {
    const NAME: &'static str = "expiration";

    fn http(&self) -> &HttpConfig {
        &self.http
    }

    /// Connects to MongoDB and NATS and returns the listener, the scheduler and the outbox
    /// relay to run (and health checks; the service has no API routes).
    async fn build(&self) -> anyhow::Result<Service> {
        let backend =
            Backend::connect::<Self>(&self.mongo, &self.nats, &[store::EXPIRATIONS]).await?;
        let schedule = store::Schedule::new(&backend.db, backend.outbox.clone());
        schedule.ensure_indexes().await?;
        let listener = backend.listener(listeners::OrderCreatedHandler(schedule.clone()));
        Ok(backend
            .service(Router::new())
            .with_task("scheduler", scheduler::task(schedule))
            .with_listener(listener))
    }
}
