//! The client's configuration: where the public APIs are, and the payment mode.

use std::net::SocketAddr;

use common::config::{ConfigError, Env, listen_addr};

/// Settings of the client, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`/`PORT` to listen on.
    pub listen: SocketAddr,
    /// `API_URL`: the base URL that routes `/api/*` (the ingress in Kubernetes, nginx in
    /// compose, the all-in-one server itself under `ticketing up`).
    pub api_url: String,
    /// `STRIPE_PUBLISHABLE_KEY`: when set, the payment form uses Stripe's card element;
    /// otherwise it takes a test-gateway token.
    pub stripe_publishable_key: Option<String>,
}

impl Config {
    /// Reads the configuration, failing fast with the name of a missing or invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let api_url = env.required("API_URL")?;
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "API_URL".to_owned(),
                value: api_url,
                reason: "expected an http:// or https:// URL".to_owned(),
            });
        }
        Ok(Self {
            listen: listen_addr(env)?,
            api_url: api_url.trim_end_matches('/').to_owned(),
            stripe_publishable_key: env.get("STRIPE_PUBLISHABLE_KEY"),
        })
    }
}
