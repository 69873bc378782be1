//! What every page handler shares: the API client and the payment mode.

use crate::api::Api;
use crate::config::{CardInput, Config};

/// The client's state, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) api: Api,
    pub(crate) card_input: CardInput,
}

impl AppState {
    /// State for the given configuration.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(&config.api_url, config.api_urls.clone())?,
            card_input: config.card_input.clone(),
        })
    }
}
