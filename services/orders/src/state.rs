//! The state every orders handler and listener shares.

use common::Sessions;
use common::server::{Backend, Shared};

use crate::config::Config;
use crate::store::OrderStore;

/// What orders' handlers and listeners share, once per process (`Shared`: one reference count
/// per request).
pub type AppState = Shared<State>;

pub struct State {
    pub(crate) orders: OrderStore,
    pub(crate) sessions: Sessions,
}

impl State {
    /// Prepares the service's collections (and their indexes).
    pub async fn new(backend: &Backend, config: &Config) -> anyhow::Result<AppState> {
        let outbox = backend.outbox.clone();
        Ok(Shared::new(Self {
            orders: OrderStore::open(
                &backend.db,
                outbox,
                config.expiration,
                config.max_open_orders,
            )
            .await?,
            sessions: Sessions::new(&config.service.sessions),
        }))
    }
}

impl AsRef<Sessions> for State {
    fn as_ref(&self) -> &Sessions {
        &self.sessions
    }
}
