//! The state every tickets handler and listener shares.

use axum::extract::FromRef;
use common::Sessions;
use common::events::Outbox;
use common::session::SessionConfig;

use crate::store::TicketStore;

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub(crate) tickets: TicketStore,
    pub(crate) sessions: Sessions,
}

impl AppState {
    /// Prepares the collections (and their indexes) of `db`.
    pub async fn new(
        db: &mongodb::Database,
        sessions: &SessionConfig,
        outbox: Outbox,
    ) -> anyhow::Result<Self> {
        let tickets = TicketStore::new(db, outbox);
        tickets.ensure_indexes().await?;
        Ok(Self {
            tickets,
            sessions: Sessions::new(sessions),
        })
    }
}

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Self {
        state.sessions.clone()
    }
}
