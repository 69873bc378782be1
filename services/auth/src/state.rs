//! The state every auth handler shares.

use axum::extract::FromRef;
use common::Sessions;
use common::rate_limit::{AccountFailures, RateLimiter};

use crate::config::Config;
use crate::password::PasswordHasher;
use crate::store::UserStore;

/// Cheap to clone: every field is a handle. Extractors read the sessions (and auth's rate
/// limiter) from it through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub(crate) users: UserStore,
    pub(crate) sessions: Sessions,
    pub(crate) hasher: PasswordHasher,
    /// Signup and signin, per client address.
    pub(crate) limiter: RateLimiter,
    /// Failed sign-ins, per account.
    pub(crate) failures: AccountFailures,
}

impl AppState {
    /// Connects to MongoDB and prepares the collection and the password hasher.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let db = config.service.mongo.connect("auth").await?;
        let users = UserStore::new(&db);
        users.ensure_indexes().await?;
        Ok(Self {
            users,
            sessions: Sessions::new(&config.service.sessions),
            hasher: PasswordHasher::new()?,
            limiter: RateLimiter::new(config.rate_limit.clone()),
            failures: AccountFailures::new(config.failures),
        })
    }
}
