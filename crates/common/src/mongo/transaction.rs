//! `Transaction`: a MongoDB transaction that retries its unit of work on transient errors.

use mongodb::error::ErrorKind;

use super::errors::is_unavailable;

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
    pub async fn start(client: &mongodb::Client) -> mongodb::error::Result<Self> {
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
