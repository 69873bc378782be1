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
    /// Where one API's routes go instead of `API_URL`, when set: `AUTH_API_URL`
    /// (`/api/users/`), `TICKETS_API_URL`, `ORDERS_API_URL`, `PAYMENTS_API_URL`. In Kubernetes
    /// each is the service's own cluster address, so the client never goes back out through
    /// the ingress controller (which would also replace the visitor's `X-Forwarded-For` with
    /// this client's address).
    pub api_urls: Vec<(&'static str, String)>,
    /// How the order page takes a card (`STRIPE_PUBLISHABLE_KEY`, `PAYMENTS_GATEWAY`).
    pub card_input: CardInput,
    /// `COOKIE_SECURE` (default true): the client's own `csrf` cookie is `Secure`.
    pub cookie_secure: bool,
}

impl FromEnv for Config {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let api_url = base_url("API_URL", env.required("API_URL")?)?;
        let mut api_urls = Vec::new();
        for (name, prefix) in API_URLS {
            if let Some(url) = env.get(name) {
                api_urls.push((prefix, base_url(name, url)?));
            }
        }
        Ok(Self {
            http: HttpConfig::from_env(env)?,
            api_url,
            api_urls,
            card_input: CardInput::from_env(env),
            cookie_secure: env.flag_or("COOKIE_SECURE", true)?,
        })
    }
}

/// How the order page takes a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardInput {
    /// `STRIPE_PUBLISHABLE_KEY` is set: Stripe's card element makes the token.
    Card {
        /// The publishable key, given to Stripe.js.
        publishable_key: String,
    },
    /// `PAYMENTS_GATEWAY` is `local` or `stripe-fake` (development): a text field for a test
    /// token such as `tok_visa`.
    TestToken,
    /// Neither: no card form (a test token would be refused by a real gateway anyway).
    Unavailable,
}

impl CardInput {
    fn from_env(env: &Env) -> Self {
        if let Some(publishable_key) = env.get("STRIPE_PUBLISHABLE_KEY") {
            return Self::Card { publishable_key };
        }
        match env.get("PAYMENTS_GATEWAY").as_deref() {
            Some("local" | "stripe-fake") => Self::TestToken,
            _ => Self::Unavailable,
        }
    }
}

/// The variables that send one API's routes elsewhere than `API_URL`, and those routes' prefix.
const API_URLS: [(&str, &str); 4] = [
    ("AUTH_API_URL", "/api/users/"),
    ("TICKETS_API_URL", "/api/tickets"),
    ("ORDERS_API_URL", "/api/orders"),
    ("PAYMENTS_API_URL", "/api/payments"),
];

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
