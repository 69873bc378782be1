//! Connecting a service to its MongoDB database; what every store needs besides lives in the
//! submodules: error meanings, retried transactions, per-record locks, combined inserts,
//! updates and reads, batched updates.

use std::time::Duration;

use anyhow::Context as _;
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Database};

use crate::config::{ConfigError, Env};

mod batch;
mod combine;
mod errors;
mod key_locks;
mod transaction;

pub use batch::update_all;
pub use combine::{IN_FLIGHT, Inserts, Reads, Updates};
pub use errors::{duplicate_key_index, is_duplicate_key, is_outage, is_unavailable};
pub use key_locks::KeyLocks;
pub use transaction::Transaction;

/// Where a service's data lives: `MONGO_URL`, and the database from `MONGO_DB`, else the
/// URL's path, else the service's name.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    /// A `mongodb://` connection string.
    pub url: String,
    /// The database this service owns.
    pub database: Option<String>,
}

/// Connections per service unless `MONGO_URL` says `maxPoolSize`.
pub const POOL_SIZE: u32 = 96;

impl MongoConfig {
    /// Reads `MONGO_URL` (required) and `MONGO_DB` (optional).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.required("MONGO_URL")?,
            database: env.get("MONGO_DB"),
        })
    }

    /// Connects (lazily: the driver dials on first use) and picks the service's database.
    pub async fn connect(&self, service: &str) -> anyhow::Result<Database> {
        let mut options = ClientOptions::parse(&self.url)
            .await
            .context("parse MONGO_URL")?;
        options.app_name = Some(service.to_owned());
        // Every request in flight can hold a connection (see `server::Limits::max_in_flight`), with room
        // for the event consumers, the outbox relay and readiness checks.
        options.max_pool_size = Some(options.max_pool_size.unwrap_or(POOL_SIZE));
        // A write is acknowledged (a 2xx answered, an event acked) only once a majority of
        // the replica set holds it, journaled, so it survives the loss of the primary. It is
        // the server's default too, but one the cluster's operators can change; a `w` in
        // `MONGO_URL` still wins.
        if options.write_concern.is_none() {
            options.write_concern = Some(WriteConcern::majority());
        }
        // Fail a request quickly when MongoDB is down instead of hanging for the default 30 s.
        options.server_selection_timeout = Some(
            options
                .server_selection_timeout
                .unwrap_or(Duration::from_secs(5)),
        );
        let name = self
            .database
            .clone()
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| service.to_owned());
        let client = Client::with_options(options).context("create mongodb client")?;
        Ok(client.database(&name))
    }
}

/// Checks that the database answers, for readiness.
pub async fn ping(db: &Database) -> anyhow::Result<()> {
    db.run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .context("ping mongodb")?;
    Ok(())
}
