//! The auth service's configuration: only what every service reads.

use common::config::{ConfigError, Env, ServiceConfig};

/// Settings of the auth service, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, database and session keys.
    pub service: ServiceConfig,
}

impl Config {
    /// Reads the configuration, failing fast with the name of a missing or invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
        })
    }
}
