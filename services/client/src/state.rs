//! What every page handler shares: the API client and the payment mode.

use crate::api::Api;
use crate::config::Config;

/// The client's state, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) api: Api,
    pub(crate) stripe_key: Option<String>,
}

impl AppState {
    /// State for the given configuration.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(&config.api_url, config.api_urls.clone())?,
            stripe_key: config.stripe_publishable_key.clone(),
        })
    }
}
