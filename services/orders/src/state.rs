//! The state every orders handler and listener shares.

use axum::extract::FromRef;
use common::Sessions;
use common::server::Backend;

use crate::config::Config;
use crate::store::OrderStore;

/// Cheap to clone: every field is a handle. Extractors read the sessions (and auth's rate
/// limiter) from it through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub(crate) orders: OrderStore,
    pub(crate) sessions: Sessions,
}

impl AppState {
    /// Prepares the service's collections (and their indexes).
    pub async fn new(backend: &Backend, config: &Config) -> anyhow::Result<Self> {
        let outbox = backend.outbox.clone();
        Ok(Self {
            orders: OrderStore::open(
                &backend.db,
                outbox,
                config.expiration,
                config.max_open_orders,
            )
            .await?,
            sessions: Sessions::new(&config.service.sessions),
        })
    }
}
