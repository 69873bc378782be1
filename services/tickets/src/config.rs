//! The tickets service's configuration: the shared settings and the event bus.

use common::config::{ConfigError, Env, FromEnv};
use common::events::NatsConfig;
use common::server::ServiceConfig;

/// Settings of the tickets service, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, database and session keys.
    pub service: ServiceConfig,
    /// `NATS_URL` and `EVENT_NAMESPACE`.
    pub nats: NatsConfig,
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
        })
    }
}
