//! The state every auth handler shares.

use common::Sessions;
use common::rate_limit::{AccountFailures, RateLimiter};
use common::server::Shared;

use crate::config::Config;
use crate::password::PasswordHasher;
use crate::store::UserStore;

/// What auth's handlers share, once per process (`Shared`: one reference count per request).
pub type AppState = Shared<State>;

pub struct State {
    pub(crate) users: UserStore,
    pub(crate) sessions: Sessions,
    pub(crate) hasher: PasswordHasher,
    /// Signup and signin, per client address.
    pub(crate) limiter: RateLimiter,
    /// Failed sign-ins, per account.
    pub(crate) failures: AccountFailures,
}

impl State {
    /// Connects to MongoDB and prepares the collection and the password hasher.
    pub async fn connect(config: &Config) -> anyhow::Result<AppState> {
        let db = config.service.mongo.connect("auth").await?;
        let users = UserStore::new(&db);
        users.ensure_indexes().await?;
        Ok(Shared::new(Self {
            users,
            sessions: Sessions::new(&config.service.sessions),
            hasher: PasswordHasher::new()?,
            limiter: RateLimiter::new(config.rate_limit.clone()),
            failures: AccountFailures::new(config.failures),
        }))
    }
}

impl AsRef<Sessions> for State {
    fn as_ref(&self) -> &Sessions {
        &self.sessions
    }
}

impl AsRef<RateLimiter> for State {
    fn as_ref(&self) -> &RateLimiter {
        &self.limiter
    }
}
