//! MongoDB connection settings and the error classifications every store needs.

use std::time::Duration;

use anyhow::Context as _;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::config::{ConfigError, Env};

/// Where a service's data lives: `MONGO_URL`, and the database from `MONGO_DB`, else the
/// URL's path, else the service's name.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    /// A `mongodb://` connection string.
    pub url: String,
    /// The database this service owns.
    pub database: Option<String>,
}

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

/// True when a write failed because a unique index already holds the value (E11000).
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == DUPLICATE_KEY)),
        _ => false,
    }
}

/// Checks that the database answers, for readiness.
pub async fn ping(db: &Database) -> anyhow::Result<()> {
    db.run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .context("ping mongodb")?;
    Ok(())
}
