//! The expiration service's configuration: where to listen, its database, the event bus.
//! It has no user-facing routes, so it needs no session key.

use common::config::{ConfigError, Env, FromEnv};
use common::events::NatsConfig;
use common::mongo::MongoConfig;
use common::server::HttpConfig;

/// Settings of the expiration service, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`/`PORT` (health endpoints only).
    pub http: HttpConfig,
    /// `MONGO_URL`/`MONGO_DB`: the durable schedule.
    pub mongo: MongoConfig,
    /// `NATS_URL` and `EVENT_NAMESPACE`.
    pub nats: NatsConfig,
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpConfig::from_env(env)?,
            mongo: MongoConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
        })
    }
}
