//! The state every payments handler and listener shares.

use std::sync::Arc;

use axum::extract::FromRef;
use common::Sessions;
use common::events::Outbox;

use crate::config::Config;
use crate::gateway::{LocalGateway, PaymentGateway, StripeGateway};
use crate::store::PaymentStore;

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub(crate) payments: PaymentStore,
    pub(crate) sessions: Sessions,
    pub(crate) gateway: Arc<dyn PaymentGateway>,
}

impl AppState {
    /// Prepares the collections of `db` and picks the gateway: Stripe when `STRIPE_KEY` is set.
    pub async fn new(
        db: &mongodb::Database,
        config: &Config,
        outbox: Outbox,
    ) -> anyhow::Result<Self> {
        let payments = PaymentStore::new(db, outbox);
        payments.ensure_indexes().await?;
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

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Self {
        state.sessions.clone()
    }
}
