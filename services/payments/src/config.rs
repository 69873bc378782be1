//! The payments service's configuration: the shared settings, the event bus, and the gateway.

use common::config::{ConfigError, Env, FromEnv};
use common::events::NatsConfig;
use common::server::ServiceConfig;

/// Settings of the payments service, loaded once at start-up.
#[derive(Clone)]
pub struct Config {
    /// Listen address, database and session keys.
    pub service: ServiceConfig,
    /// `NATS_URL` and `EVENT_NAMESPACE`.
    pub nats: NatsConfig,
    /// `STRIPE_KEY`: with it, cards are charged through Stripe; without, the local test
    /// gateway answers (`tok_visa` succeeds, `tok_chargeDeclined` is declined).
    pub stripe_key: Option<String>,
    /// `STRIPE_API_BASE` (default `https://api.stripe.com`), for a proxy or a test server.
    pub stripe_api_base: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("service", &self.service)
            .field("nats", &self.nats)
            .field(
                "stripe_key",
                &self.stripe_key.as_ref().map(|_| "<redacted>"),
            )
            .field("stripe_api_base", &self.stripe_api_base)
            .finish()
    }
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
            stripe_key: env.get("STRIPE_KEY"),
            stripe_api_base: env
                .get("STRIPE_API_BASE")
                .unwrap_or_else(|| "https://api.stripe.com".to_owned()),
        })
    }
}
