//! The client's configuration: where the public APIs are, and the payment mode.

use common::config::{ConfigError, Env, FromEnv};
use common::server::HttpConfig;

/// Settings of the client, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`/`PORT` to listen on; `CORS_ALLOWED_ORIGINS`, and HSTS when `COOKIE_SECURE` (the
    /// pages are what a browser loads first, so HSTS matters most here).
    pub http: HttpConfig,
    /// `API_URL`: the base URL that routes `/api/*` (the ingress in Kubernetes, nginx in
    /// compose, the all-in-one server itself under `ticketing up`).
    pub api_url: String,
    /// `AUTH_API_URL`: where `/api/users/*` goes instead, when set. In Kubernetes it is auth's
    /// own Service: the ingress would replace the visitor's `X-Forwarded-For` with this
    /// client's address, and every browser sign-in would share one rate-limit bucket.
    pub auth_api_url: Option<String>,
    /// `STRIPE_PUBLISHABLE_KEY`: when set, the payment form uses Stripe's card element;
    /// otherwise it takes a test-gateway token.
    pub stripe_publishable_key: Option<String>,
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let api_url = base_url("API_URL", env.required("API_URL")?)?;
        let auth_api_url = match env.get("AUTH_API_URL") {
            Some(url) => Some(base_url("AUTH_API_URL", url)?),
            None => None,
        };
        Ok(Self {
            http: HttpConfig::from_env(env)?,
            api_url,
            auth_api_url,
            stripe_publishable_key: env.get("STRIPE_PUBLISHABLE_KEY"),
        })
    }
}

/// An `http(s)://` base URL without its trailing slash.
fn base_url(name: &str, url: String) -> Result<String, ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(ConfigError::Invalid {
            name: name.to_owned(),
            value: url,
            reason: "expected an http:// or https:// URL".to_owned(),
        })
    }
}
