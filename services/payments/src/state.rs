//! The state every payments handler and listener shares.

use std::sync::Arc;

use axum::extract::FromRef;
use common::Sessions;
use common::server::Backend;

use crate::config::{Config, GatewayChoice};
use crate::gateway::{LocalGateway, PaymentGateway, StripeGateway};
use crate::saga::Saga;
use crate::store::PaymentStore;

/// Cheap to clone: every field is a handle. Extractors read the sessions (and auth's rate
/// limiter) from it through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub(crate) saga: Saga,
    pub(crate) sessions: Sessions,
}

impl AppState {
    /// Prepares the service's collections and the configured gateway.
    pub async fn new(backend: &Backend, config: &Config) -> anyhow::Result<Self> {
        let store = PaymentStore::open(&backend.db, backend.outbox.clone()).await?;
        let gateway: Arc<dyn PaymentGateway> = match &config.gateway {
            GatewayChoice::Stripe(stripe) => Arc::new(StripeGateway::new(stripe)?),
            GatewayChoice::Local => {
                tracing::warn!(
                    "payments: the local test gateway accepts any token but tok_chargeDeclined"
                );
                Arc::new(LocalGateway::default())
            }
        };
        Ok(Self {
            saga: Saga::new(store, gateway, config.saga),
            sessions: Sessions::new(&config.service.sessions),
        })
    }
}
