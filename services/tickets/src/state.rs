//! The state every tickets handler and listener shares.

use axum::extract::FromRef;
use common::Sessions;
use common::server::Backend;
use common::session::SessionConfig;

use crate::store::TicketStore;

/// Cheap to clone: every field is a handle. Extractors read the sessions (and auth's rate
/// limiter) from it through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub(crate) tickets: TicketStore,
    pub(crate) sessions: Sessions,
}

impl AppState {
    /// Prepares the service's collections (and their indexes).
    pub async fn new(backend: &Backend, sessions: &SessionConfig) -> anyhow::Result<Self> {
        Ok(Self {
            tickets: TicketStore::open(&backend.db, backend.outbox.clone()).await?,
            sessions: Sessions::new(sessions),
        })
    }
}
