//! The state every payments handler and listener shares.

use std::sync::Arc;

use axum::extract::FromRef;
use common::Sessions;
use common::server::Backend;

use crate::config::Config;
use crate::gateway::{LocalGateway, PaymentGateway, StripeGateway};
use crate::store::PaymentStore;

/// Cheap to clone: every field is a handle. Extractors read the sessions (and auth's rate
/// limiter) from it through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub(crate) payments: PaymentStore,
    pub(crate) sessions: Sessions,
    pub(crate) gateway: Arc<dyn PaymentGateway>,
}

impl AppState {
    /// Prepares the service's collections and picks the gateway: Stripe when `STRIPE_KEY` is
    /// set.
    pub async fn new(backend: &Backend, config: &Config) -> anyhow::Result<Self> {
        let payments = PaymentStore::open(&backend.db, backend.outbox.clone()).await?;
        let gateway: Arc<dyn PaymentGateway> = match &config.stripe_key {
            Some(key) => Arc::new(StripeGateway::new(&config.stripe_api_base, key)?),
            None => Arc::new(LocalGateway),
        };
        Ok(Self {
            payments,
            sessions: Sessions::new(&config.service.sessions),
            gateway,
        })
    }
}
