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

pub use config::Config;

use axum::Router;
use common::events::{EventBus, Listener, Outbox};
use common::health::ReadinessCheck;
use common::server::Service;

/// Connects to MongoDB and NATS and returns the listener, the scheduler and the outbox relay
/// to run (and health checks; the service has no API routes).
pub async fn build(config: &Config) -> anyhow::Result<Service> {
    let db = config.mongo.connect("expiration").await?;
    let bus = EventBus::connect(&config.nats, "expiration").await?;
    let outbox = Outbox::new(&db, &[store::EXPIRATIONS]);
    outbox.ensure_indexes().await?;
    let schedule = store::Schedule::new(&db, outbox.clone());
    schedule.ensure_indexes().await?;
    let checks = vec![
        ReadinessCheck::mongo("expiration-mongo", db),
        bus.readiness_check(),
    ];
    let listener = Listener::new(
        bus.clone(),
        "expiration",
        listeners::OrderCreatedHandler(schedule.clone()),
    );
    Ok(Service::new("expiration", Router::new(), checks)
        .with_outbox(outbox, bus)
        .with_task("scheduler", scheduler::task(schedule))
        .with_listener(listener))
}
