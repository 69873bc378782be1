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
//! A caller that goes away (its request cancelled) before its document was taken takes the
//! document with it: like a lone insert cancelled before it was sent, it is not written.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use mongodb::Collection;
use mongodb::bson::Document;
use mongodb::error::{Error, ErrorKind};
use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument as _;

/// Insert commands one collection has out at once; what arrives meanwhile waits for the next.
/// One alone would make each batch wait out a journal flush by itself; a few overlap those
/// waits, and more add little but commands queued in MongoDB (`docs/performance.md`).
pub const IN_FLIGHT: usize = 4;
/// Most documents of one command: far below the server's 100,000 writes per batch, and, for
/// documents under 48 KB (tickets and orders, with their events, are under 2 KB), below its
/// 48 MB per message, so that the driver does not split a batch (a failure of a later part
/// would hide an earlier part's success).
const MAX_BATCH: usize = 1_000;

/// One caller's document and where its outcome goes.
struct Waiting {
    /// Place in the queue: documents are taken oldest first.
    seq: u64,
    document: Document,
    outcome: oneshot::Sender<mongodb::error::Result<()>>,
}

/// The documents waiting for a command, oldest first.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    next_seq: u64,
}

impl Queue {
    /// Up to [`MAX_BATCH`] of the oldest documents whose callers still wait for them.
    fn take(&mut self) -> Vec<Waiting> {
        let mut batch = Vec::new();
        while batch.len() < MAX_BATCH {
            let Some(waiting) = self.waiting.pop_front() else {
                break;
            };
            // Its caller went away before it was sent: it is not written.
            if !waiting.outcome.is_closed() {
                batch.push(waiting);
            }
        }
        batch
    }

    /// Whether the document `seq` is still in the queue.
    fn holds(&self, seq: u64) -> bool {
        self.waiting.front().is_some_and(|first| first.seq <= seq)
    }
}

/// The inserts into one collection, combined; clones share the queue.
///
/// ```no_run
/// # async fn example(collection: mongodb::Collection<mongodb::bson::Document>) -> mongodb::error::Result<()> {
/// let inserts = common::mongo::Inserts::new(&collection);
/// // Called from many requests at once: they share insert commands.
/// inserts.insert(mongodb::bson::doc! { "title": "concert" }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Inserts {
    collection: Collection<Document>,
    queue: Arc<Mutex<Queue>>,
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
    /// Combined inserts into `collection`, with its write concern.
    pub fn new<T: Send + Sync>(collection: &Collection<T>) -> Self {
        Self {
            collection: collection.clone_with_type(),
            queue: Arc::default(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Pushes and takes leave the queue whole even if a holder panicked.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts `document`, with whatever else waits to be inserted, once a command slot is
    /// free, and returns this document's outcome. A failure of the whole command (no server,
    /// a network error, a write concern not met) is every document's outcome, as it would be
    /// for a lone insert; a document's own write error (a duplicate key) is its alone. Errors
    /// of a combined command come as [`ErrorKind::InsertMany`], holding only this document's
    /// write error, if any.
    pub async fn insert(&self, document: Document) -> mongodb::error::Result<()> {
        let (outcome, mut done) = oneshot::channel();
        let seq = {
            let mut queue = self.queue();
            let seq = queue.next_seq;
            queue.next_seq += 1;
            queue.waiting.push_back(Waiting {
                seq,
                document,
                outcome,
            });
            seq
        };
        loop {
            let slot = tokio::select! {
                biased;
                // Taken and written with another caller's batch while we waited for a slot.
                outcome = &mut done => return received(outcome),
                slot = Arc::clone(&self.in_flight).acquire_owned() => {
                    slot.map_err(|_| Error::custom("insert queue closed"))?
                }
            };
            let (batch, ours_waits) = {
                let mut queue = self.queue();
                let batch = queue.take();
                (batch, queue.holds(seq))
            };
            if !batch.is_empty() {
                // The write runs on its own, so that a caller that goes away mid-write (its
                // request was cancelled) does not take the others' outcomes with it.
                let collection = self.collection.clone();
                tokio::spawn(
                    async move {
                        write(&collection, batch).await;
                        drop(slot);
                    }
                    .in_current_span(),
                );
            }
            // A slot that sends nothing is given back at once (dropped here).
            if !ours_waits {
                // Ours went out with this batch or with an earlier one.
                return received(done.await);
            }
        }
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

/// What the failure of a combined insert means for its `index`th document: the whole
/// command's failure (a write concern not met, no server: outcome unknown, as for a lone
/// insert that fails), else its own write error, else success (only others failed). The
/// error keeps only this document's write error, so that a duplicate key elsewhere in the
/// batch is not taken for its own.
fn outcome_of(error: &Error, index: usize) -> mongodb::error::Result<()> {
    let ErrorKind::InsertMany(failure) = &*error.kind else {
        return Err(error.clone());
    };
    let own = failure
        .write_errors
        .iter()
        .flatten()
        .find(|e| e.index == index)
        .cloned();
    if own.is_none() && failure.write_concern_error.is_none() {
        return Ok(());
    }
    let mut error = error.clone();
    if let ErrorKind::InsertMany(failure) = &mut *error.kind {
        failure.write_errors = own.map(|mut own| {
            // Its place in its caller's eyes: the only document.
            own.index = 0;
            vec![own]
        });
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use mongodb::error::InsertManyError;

    use super::*;
    use crate::mongo::{is_duplicate_key, is_unavailable};

    fn failure(reply: Document) -> Error {
        let failure: InsertManyError =
            mongodb::bson::from_document(reply).expect("an insert_many failure");
        Error::from(ErrorKind::InsertMany(failure))
    }

    fn duplicate(index: i32) -> Document {
        doc! { "index": index, "code": 11000, "errmsg": format!("E11000 dup key: {{ _id: \"k{index}\" }}") }
    }

    fn own_errors(outcome: &mongodb::error::Result<()>) -> Vec<(usize, String)> {
        match outcome.as_ref().map_err(|e| &*e.kind) {
            Err(ErrorKind::InsertMany(failure)) => failure
                .write_errors
                .iter()
                .flatten()
                .map(|e| (e.index, e.message.clone()))
                .collect(),
            other => panic!("not a combined insert's failure: {other:?}"),
        }
    }

    #[test]
    fn each_document_gets_its_own_write_error_or_success() {
        let error = failure(doc! { "writeErrors": [duplicate(0), duplicate(2)] });
        assert!(outcome_of(&error, 1).is_ok(), "only others failed");
        let second = outcome_of(&error, 2);
        assert!(is_duplicate_key(second.as_ref().unwrap_err()));
        assert_eq!(
            own_errors(&second),
            [(0, "E11000 dup key: { _id: \"k2\" }".to_owned())]
        );
    }

    #[test]
    fn a_write_concern_not_met_is_everyones_and_keeps_only_their_own_write_error() {
        let stepped_down =
            doc! { "code": 189, "codeName": "PrimarySteppedDown", "errmsg": "stepped down" };
        let error = failure(doc! {
            "writeErrors": [duplicate(0)],
            "writeConcernError": stepped_down,
        });
        let other = outcome_of(&error, 1);
        let other_error = other.as_ref().unwrap_err();
        assert!(is_unavailable(other_error), "a stepdown answers 503");
        assert!(
            !is_duplicate_key(other_error),
            "another document's duplicate is not this one's"
        );
        assert!(own_errors(&other).is_empty());
        let own = outcome_of(&error, 0);
        assert!(is_duplicate_key(own.as_ref().unwrap_err()));
    }

    #[test]
    fn a_failure_of_the_whole_command_is_everyones() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = Error::from(refused);
        for index in 0..3 {
            assert!(is_unavailable(
                outcome_of(&error, index).as_ref().unwrap_err()
            ));
        }
    }
}
