//! The state every tickets handler and listener shares.

use common::Sessions;
use common::server::{Backend, Shared};
use common::session::SessionConfig;

use crate::store::TicketStore;

/// What tickets' handlers and listeners share, once per process (`Shared`: one reference count
/// per request).
pub type AppState = Shared<State>;

pub struct State {
    pub(crate) tickets: TicketStore,
    pub(crate) sessions: Sessions,
}

impl State {
    /// Prepares the service's collections (and their indexes).
    pub async fn new(backend: &Backend, sessions: &SessionConfig) -> anyhow::Result<AppState> {
        Ok(Shared::new(Self {
            tickets: TicketStore::open(&backend.db, backend.outbox.clone()).await?,
            sessions: Sessions::new(sessions),
        }))
    }
}

impl AsRef<Sessions> for State {
    fn as_ref(&self) -> &Sessions {
        &self.sessions
    }
}
