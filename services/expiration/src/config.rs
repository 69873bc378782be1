//! The expiration service's configuration: where to listen, its database, the event bus.
//! It has no user-facing routes, so it needs no session key.

use std::net::SocketAddr;

use common::config::{ConfigError, Env, listen_addr};
use common::events::NatsConfig;
use common::mongo::MongoConfig;

/// Settings of the expiration service, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`/`PORT` (health endpoints only).
    pub listen: SocketAddr,
    /// `MONGO_URL`/`MONGO_DB`: the durable schedule.
    pub mongo: MongoConfig,
    /// `NATS_URL` and `EVENT_NAMESPACE`.
    pub nats: NatsConfig,
}

impl Config {
    /// Reads the configuration, failing fast with the name of a missing or invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            listen: listen_addr(env)?,
            mongo: MongoConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
        })
    }
}
