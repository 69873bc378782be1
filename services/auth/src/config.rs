//! The auth service's configuration: what every service reads, and the sign-in/sign-up limits.

use common::config::{ConfigError, Env, FromEnv};
use common::rate_limit::{FailureLimit, RateLimit, TrustedProxies};
use common::server::ServiceConfig;

/// Settings of the auth service, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, database, session keys and browser protections.
    pub service: ServiceConfig,
    /// Per client address, shared by signup and signin: `AUTH_RATE_LIMIT_PER_MINUTE` (default
    /// 30), `AUTH_RATE_LIMIT_BURST` (default 10); the client behind `TRUSTED_PROXIES`.
    pub rate_limit: RateLimit,
    /// Failed sign-ins per account, from any address: `AUTH_FAILURES_BURST` (default 10) at
    /// once, then `AUTH_FAILURES_PER_MINUTE` (default 6).
    pub failures: FailureLimit,
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            rate_limit: RateLimit {
                per_minute: env.parse_or("AUTH_RATE_LIMIT_PER_MINUTE", nonzero(30))?,
                burst: env.parse_or("AUTH_RATE_LIMIT_BURST", nonzero(10))?,
                trusted_proxies: TrustedProxies::from_env(env)?,
            },
            failures: FailureLimit {
                per_minute: env.parse_or("AUTH_FAILURES_PER_MINUTE", nonzero(6))?,
                burst: env.parse_or("AUTH_FAILURES_BURST", nonzero(10))?,
            },
        })
    }
}

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN)
}
