//! The state every payments handler and listener shares.

use std::sync::Arc;

use common::Sessions;
use common::server::{Backend, Shared};

use crate::config::{Config, GatewayChoice};
use crate::gateway::{LocalGateway, PaymentGateway, StripeGateway};
use crate::saga::Saga;
use crate::store::PaymentStore;

/// What payments' handlers and listeners share, once per process (`Shared`: one reference count
/// per request).
pub type AppState = Shared<State>;

pub struct State {
    pub(crate) saga: Saga,
    pub(crate) sessions: Sessions,
}

impl State {
    /// Prepares the service's collections and the configured gateway.
    pub async fn new(backend: &Backend, config: &Config) -> anyhow::Result<AppState> {
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
        Ok(Shared::new(Self {
            saga: Saga::new(store, gateway, config.saga),
            sessions: Sessions::new(&config.service.sessions),
        }))
    }
}

impl AsRef<Sessions> for State {
    fn as_ref(&self) -> &Sessions {
        &self.sessions
    }
}
