//! Group commit for inserts: documents inserted into one collection while earlier inserts are
//! in flight wait together and go to MongoDB as one `insert_many`.
//!
//! MongoDB's cost of an insert is mostly per command (parsing, locking, the oplog entry's
//! bookkeeping, waking for the journal flush), not per document: under load, one command
//! per document keeps mongod busy with overhead. With at most [`IN_FLIGHT`] commands out at
//! once, what arrives meanwhile forms the next batch; a lone insert goes out at once, so light
//! traffic waits for nothing. Each caller still gets its own document's outcome: a duplicate
//! key fails only the document that had it.
//!
//! A caller that goes away (its request cancelled) before its document was taken leaves it
//! to the next batch: like a lone insert cancelled in flight, it may still be written, and
//! an event inside it is then published by the outbox's scan.

use std::sync::{Arc, Mutex, PoisonError};

use mongodb::Collection;
use mongodb::bson::Document;
use mongodb::error::{Error, ErrorKind};
use tokio::sync::{Semaphore, oneshot};

/// Insert commands one collection has out at once; what arrives meanwhile waits for the next.
/// Measured with 64 clients creating tickets (`ticketing bench`, a fresh database, orders'
/// replica on 2 lanes): 1 → 0.8k creates/s (each batch waits out a journal flush alone),
/// 2 → 4.4–6.0k, 4 → 5.6–7.5k, 8 → 6.1–8.0k; one command per document → 4.0–4.3k.
pub const IN_FLIGHT: usize = 4;
/// Most documents of one command: below the server's batch limits, so that the driver never
/// splits a batch (a failure of a second part would hide the first part's success).
const MAX_BATCH: usize = 1_000;

/// One caller's document and where its outcome goes.
struct Waiting {
    document: Document,
    outcome: oneshot::Sender<mongodb::error::Result<()>>,
}

/// The inserts into one collection, combined; clones share the queue.
#[derive(Clone)]
pub struct Inserts {
    collection: Collection<Document>,
    waiting: Arc<Mutex<Vec<Waiting>>>,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for Inserts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inserts")
            .field("collection", &self.collection.name())
            .finish_non_exhaustive()
    }
}

impl Inserts {
    /// Combined inserts into `collection`.
    pub fn new<T: Send + Sync>(collection: &Collection<T>) -> Self {
        Self {
            collection: collection.clone_with_type(),
            waiting: Arc::default(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        // Pushes and takes leave the queue whole even if a holder panicked.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts `document`, with whatever else waits to be inserted, once a command slot is
    /// free; returns this document's outcome, as `insert_one` would.
    pub async fn insert(&self, document: Document) -> mongodb::error::Result<()> {
        let (outcome, mut done) = oneshot::channel();
        self.waiting().push(Waiting { document, outcome });
        let slot = tokio::select! {
            // Taken and written with another caller's batch while we waited for a slot.
            outcome = &mut done => return received(outcome),
            slot = Arc::clone(&self.in_flight).acquire_owned() => {
                slot.map_err(|_| Error::custom("insert queue closed"))?
            }
        };
        let batch = {
            let mut waiting = self.waiting();
            let keep = waiting.len().saturating_sub(MAX_BATCH);
            waiting.split_off(keep)
        };
        if !batch.is_empty() {
            // The write runs on its own, so that a caller that goes away mid-write (its
            // request was cancelled) does not take the others' outcomes with it.
            let collection = self.collection.clone();
            tokio::spawn(async move {
                write(&collection, batch).await;
                drop(slot);
            });
        }
        // Ours went out with this batch or with another taker's.
        received(done.await)
    }
}

fn received(
    outcome: Result<mongodb::error::Result<()>, oneshot::error::RecvError>,
) -> mongodb::error::Result<()> {
    outcome.map_err(|_| Error::custom("insert abandoned: its batch's task ended"))?
}

async fn write(collection: &Collection<Document>, batch: Vec<Waiting>) {
    let (documents, outcomes): (Vec<Document>, Vec<_>) = batch
        .into_iter()
        .map(|waiting| (waiting.document, waiting.outcome))
        .unzip();
    let count = documents.len();
    // Unordered: one document's failure does not stop the others.
    let result = collection.insert_many(documents).ordered(false).await;
    tracing::debug!(
        collection = collection.name(),
        count,
        ok = result.is_ok(),
        "combined insert"
    );
    for (index, outcome) in outcomes.into_iter().enumerate() {
        // A caller that went away no longer wants its outcome.
        let _ = outcome.send(match &result {
            Ok(_) => Ok(()),
            Err(error) => outcome_of(error, index),
        });
    }
}

/// What the failure of a combined insert means for its `index`th document: its own write
/// error, success when only others failed, or the whole command's failure (outcome unknown,
/// as for a lone insert that fails).
fn outcome_of(error: &Error, index: usize) -> mongodb::error::Result<()> {
    let ErrorKind::InsertMany(failure) = &*error.kind else {
        return Err(error.clone());
    };
    if failure.write_concern_error.is_some() {
        return Err(error.clone());
    }
    let Some(own) = failure
        .write_errors
        .iter()
        .flatten()
        .find(|e| e.index == index)
    else {
        return Ok(());
    };
    let mut error = error.clone();
    if let ErrorKind::InsertMany(failure) = &mut *error.kind {
        failure.write_errors = Some(vec![own.clone()]);
    }
    Err(error)
}
