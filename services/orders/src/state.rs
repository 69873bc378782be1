//! The state every orders handler and listener shares.

use axum::extract::FromRef;
use common::Sessions;
use common::events::Outbox;

use crate::config::Config;
use crate::store::OrderStore;

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub(crate) orders: OrderStore,
    pub(crate) sessions: Sessions,
}

impl AppState {
    /// Prepares the collections (and their indexes) of `db`.
    pub async fn new(
        db: &mongodb::Database,
        config: &Config,
        outbox: Outbox,
    ) -> anyhow::Result<Self> {
        let orders = OrderStore::new(db, outbox, config.expiration);
        orders.ensure_indexes().await?;
        Ok(Self {
            orders,
            sessions: Sessions::new(&config.service.sessions),
        })
    }
}

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Self {
        state.sessions.clone()
    }
}
