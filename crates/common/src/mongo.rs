//! MongoDB connection settings and the error classifications every store needs.

use std::time::Duration;

use anyhow::Context as _;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::config::{ConfigError, Env};

mod combine;
pub use combine::{IN_FLIGHT, Inserts};

/// Where a service's data lives: `MONGO_URL`, and the database from `MONGO_DB`, else the
/// URL's path, else the service's name.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    /// A `mongodb://` connection string.
    pub url: String,
    /// The database this service owns.
    pub database: Option<String>,
}

/// Connections per service unless `MONGO_URL` says `maxPoolSize`.
pub const POOL_SIZE: u32 = 96;

impl MongoConfig {
    /// Reads `MONGO_URL` (required) and `MONGO_DB` (optional).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.required("MONGO_URL")?,
            database: env.get("MONGO_DB"),
        })
    }

    /// Connects (lazily: the driver dials on first use) and picks the service's database.
    pub async fn connect(&self, service: &str) -> anyhow::Result<Database> {
        let mut options = ClientOptions::parse(&self.url)
            .await
            .context("parse MONGO_URL")?;
        options.app_name = Some(service.to_owned());
        // Every request in flight can hold a connection (see server::MAX_IN_FLIGHT), with room
        // for the event consumers, the outbox relay and readiness checks.
        options.max_pool_size = Some(options.max_pool_size.unwrap_or(POOL_SIZE));
        // Fail a request quickly when MongoDB is down instead of hanging for the default 30 s.
        options.server_selection_timeout = Some(
            options
                .server_selection_timeout
                .unwrap_or(Duration::from_secs(5)),
        );
        let name = self
            .database
            .clone()
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| service.to_owned());
        let client = Client::with_options(options).context("create mongodb client")?;
        Ok(client.database(&name))
    }
}

/// True when a write failed because a unique index already holds the value (E11000).
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == DUPLICATE_KEY)),
        _ => false,
    }
}

/// True when MongoDB is unreachable or cannot take the operation right now: no server could
/// be selected in time, the connection failed, or the server is shutting down, stepping down,
/// or not (yet) primary. Retrying later may succeed, so clients get 503, not 500.
pub fn is_unavailable(error: &mongodb::error::Error) -> bool {
    // HostUnreachable, HostNotFound, NetworkTimeout, ShutdownInProgress, PrimarySteppedDown,
    // SocketException, NotWritablePrimary, InterruptedAtShutdown,
    // InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary.
    const CODES: [i32; 11] = [6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436];
    match &*error.kind {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(e) => CODES.contains(&e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => CODES.contains(&e.code),
        // A combined insert's (`Inserts`): a write concern not met is the whole command's.
        ErrorKind::InsertMany(e) => e
            .write_concern_error
            .as_ref()
            .is_some_and(|e| CODES.contains(&e.code)),
        _ => false,
    }
}

/// [`is_unavailable`] anywhere in the chain of causes of `error`, however many contexts were
/// added on the way up.
pub fn is_outage(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<mongodb::error::Error>())
        .any(is_unavailable)
}

/// Checks that the database answers, for readiness.
pub async fn ping(db: &Database) -> anyhow::Result<()> {
    db.run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .context("ping mongodb")?;
    Ok(())
}

/// Parses a record id from a URL path; anything that is not an ObjectId is simply not found.
pub fn path_id(id: &str) -> Result<mongodb::bson::oid::ObjectId, crate::ApiError> {
    mongodb::bson::oid::ObjectId::parse_str(id).map_err(|_| crate::ApiError::NotFound)
}

/// The `{id}` of a route as an ObjectId. Anything else — including a segment that is not
/// valid UTF-8 once decoded, which axum's `Path` would answer with a plain-text 400 — is a
/// 404 in the error shape.
#[derive(Debug, Clone, Copy)]
pub struct RecordId(pub mongodb::bson::oid::ObjectId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RecordId {
    type Rejection = crate::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| crate::ApiError::NotFound)?;
        path_id(&id).map(Self)
    }
}

/// A MongoDB transaction that retries its whole unit of work on transient errors (write
/// conflicts with a concurrent transaction, elections), the way the driver's convenient API
/// does, but without a closure so the work can borrow freely:
///
/// ```ignore
/// let mut tx = Transaction::start(&client).await?;
/// let value = loop {
///     let result = async { /* reads and writes with tx.session() */ }.await;
///     if let Some(value) = tx.finish(result).await? { break value; }
/// };
/// ```
pub struct Transaction {
    session: mongodb::ClientSession,
    attempts: u32,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Attempts before a transient failure is reported instead of retried.
const TRANSACTION_ATTEMPTS: u32 = 20;

impl Transaction {
    /// Starts a session and a transaction on it.
    pub async fn start(client: &Client) -> mongodb::error::Result<Self> {
        let mut session = client.start_session().await?;
        session.start_transaction().await?;
        Ok(Self {
            session,
            attempts: 1,
        })
    }

    /// The session every operation of the unit must use.
    pub fn session(&mut self) -> &mut mongodb::ClientSession {
        &mut self.session
    }

    /// Commits after `Ok`, aborts after `Err`. Returns `Ok(None)` when the unit must run
    /// again (a new transaction is already started), `Ok(Some(value))` once committed.
    pub async fn finish<T>(
        &mut self,
        result: mongodb::error::Result<T>,
    ) -> mongodb::error::Result<Option<T>> {
        const TRANSIENT: &str = "TransientTransactionError";
        const UNKNOWN_COMMIT: &str = "UnknownTransactionCommitResult";
        // The driver labels a failed server selection transient too, but it has already waited
        // the whole selection timeout for a server: MongoDB is down, and another attempt would
        // only keep the client waiting that long again (twenty times over) before the 503.
        let retry = |e: &mongodb::error::Error, label: &str, attempts: u32| {
            e.contains_label(label)
                && attempts < TRANSACTION_ATTEMPTS
                && !matches!(*e.kind, ErrorKind::ServerSelection { .. })
        };
        let error = match result {
            Ok(value) => loop {
                match self.session.commit_transaction().await {
                    Ok(()) => return Ok(Some(value)),
                    // The commit may or may not have happened; committing again is safe.
                    Err(e) if retry(&e, UNKNOWN_COMMIT, self.attempts) => {
                        self.attempts += 1;
                    }
                    Err(e) => break e,
                }
            },
            Err(error) if is_unavailable(&error) => {
                // An abort would first wait for a server again, keeping the client waiting for
                // nothing. Dropping the session aborts in the background instead; a retry gets
                // a fresh one (starting a session does not talk to the server).
                self.session = self.session.client().start_session().await?;
                error
            }
            Err(error) => {
                // Aborting an already aborted transaction fails harmlessly.
                let _ = self.session.abort_transaction().await;
                error
            }
        };
        if retry(&error, TRANSIENT, self.attempts) {
            self.attempts += 1;
            // Conflicting writers back off a little so they do not collide again at once.
            tokio::time::sleep(std::time::Duration::from_millis(
                u64::from(self.attempts) * 2,
            ))
            .await;
            self.session.start_transaction().await?;
            return Ok(None);
        }
        Err(error)
    }
}

/// Striped in-process locks by record key: changes to one record made by this process run one
/// after the other instead of colliding in MongoDB, where the loser's transaction is aborted
/// with a write conflict and retried. Under load those retries used to be most of the work.
/// Other replicas still collide now and then; the transaction retry covers them.
#[derive(Debug)]
pub struct KeyLocks {
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::hash::RandomState,
}

impl KeyLocks {
    /// `stripes` locks shared by all keys (two keys may share one; that only serializes them).
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Waits for the lock of `key` (fair: first come, first served).
    pub async fn lock(&self, key: &impl std::hash::Hash) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher as _;
        let hash = self.hasher.hash_one(key);
        self.stripes[(hash % self.stripes.len() as u64) as usize]
            .lock()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_found_under_contexts_and_other_errors_are_not_outages() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outage = anyhow::Error::new(mongodb::error::Error::from(refused))
            .context("apply ticket")
            .context("handle message");
        assert!(is_outage(&outage));
        assert!(!is_outage(&anyhow::anyhow!(
            "ticket version from the future"
        )));
        assert!(!is_outage(&anyhow::Error::new(
            mongodb::error::Error::custom("bug")
        )));
    }

    #[tokio::test]
    async fn one_key_is_locked_until_released_and_other_stripes_are_free() {
        let locks = KeyLocks::new(1024);
        let held = locks.lock(&"ticket-1").await;
        assert!(
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                locks.lock(&"ticket-1")
            )
            .await
            .is_err(),
            "the same key must wait"
        );
        drop(held);
        let _again = locks.lock(&"ticket-1").await;
        // With 1024 stripes, some other key lands on another stripe and is not blocked.
        let free = (0..100).map(|i| format!("other-{i}")).collect::<Vec<_>>();
        let mut any_free = false;
        for key in &free {
            if tokio::time::timeout(std::time::Duration::from_millis(5), locks.lock(key))
                .await
                .is_ok()
            {
                any_free = true;
                break;
            }
        }
        assert!(any_free);
    }
}
