//! The orders service's configuration: the shared settings, the event bus, and the hold window.

use std::time::Duration;

use common::config::{ConfigError, Env, FromEnv};
use common::events::NatsConfig;
use common::server::ServiceConfig;

/// Settings of the orders service, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, database and session keys.
    pub service: ServiceConfig,
    /// `NATS_URL` and `EVENT_NAMESPACE`.
    pub nats: NatsConfig,
    /// How long an order holds its ticket: `ORDER_EXPIRATION_SECONDS` (default 900).
    pub expiration: Duration,
    /// Orders one user may have created or awaiting payment at once:
    /// `MAX_OPEN_ORDERS_PER_USER` (default 10), so that one account cannot hold every ticket.
    pub max_open_orders: usize,
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
            expiration: Duration::from_secs(env.parse_or("ORDER_EXPIRATION_SECONDS", 900)?),
            max_open_orders: env.parse_or("MAX_OPEN_ORDERS_PER_USER", 10)?,
        })
    }
}
