//! Group commit: writes to one collection that arrive while earlier writes are in flight wait
//! together and go to MongoDB as one command — inserts ([`Inserts`]) and guarded updates
//! ([`Updates`]); reads by id ([`Reads`]) combine the same way.
//!
//! MongoDB's cost of a write is mostly per command (parsing, locking, the oplog entry's
//! bookkeeping, waking for the journal flush), not per document: under load, one command
//! per document keeps mongod busy with overhead. With at most [`IN_FLIGHT`] commands out at
//! once, what arrives meanwhile forms the next batch; a lone write goes out at once, so light
//! traffic waits for nothing. Each caller still gets its own write's outcome.
//!
//! A caller that goes away (its request cancelled) before its write was taken takes the
//! write with it: like a lone write cancelled before it was sent, it is not made.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use mongodb::error::Error;
use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument as _;

mod inserts;
mod reads;
mod updates;

pub use inserts::Inserts;
pub use reads::Reads;
pub use updates::Updates;

/// Commands one collection has out at once for one kind of write; what arrives meanwhile
/// waits for the next. One alone would make each batch wait out a journal flush by itself; a
/// few overlap those waits, and more add little but commands queued in MongoDB
/// (`docs/performance.md`).
pub const IN_FLIGHT: usize = 4;
/// How one kind of combined write (or read) reaches MongoDB.
trait Write: Clone + Send + Sync + 'static {
    /// One caller's write.
    type Item: Send + 'static;
    /// What one caller learns of its write.
    type Outcome: Send + 'static;
    /// Most writes of one command (see each writer for why).
    const MAX_BATCH: usize;
    /// Sends `batch` as one command; one outcome per item, in the batch's order.
    fn write(
        &self,
        batch: Vec<Self::Item>,
    ) -> impl Future<Output = Vec<mongodb::error::Result<Self::Outcome>>> + Send;
}

/// One caller's write and where its outcome goes.
struct Waiting<I, O> {
    /// Place in the queue: writes are taken oldest first.
    seq: u64,
    item: I,
    outcome: oneshot::Sender<mongodb::error::Result<O>>,
}

/// The writes waiting for a command, oldest first.
struct Queue<I, O> {
    waiting: VecDeque<Waiting<I, O>>,
    next_seq: u64,
}

impl<I, O> Default for Queue<I, O> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            next_seq: 0,
        }
    }
}

impl<I, O> Queue<I, O> {
    /// Up to `max` of the oldest writes whose callers still wait for them.
    fn take(&mut self, max: usize) -> Vec<Waiting<I, O>> {
        let mut batch = Vec::new();
        while batch.len() < max {
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

    /// Whether the write `seq` is still in the queue.
    fn holds(&self, seq: u64) -> bool {
        self.waiting.front().is_some_and(|first| first.seq <= seq)
    }
}

/// The combined writes of one kind into one collection; clones share the queue.
struct Combined<W: Write> {
    writer: W,
    queue: Arc<Mutex<Queue<W::Item, W::Outcome>>>,
    in_flight: Arc<Semaphore>,
}

impl<W: Write> Clone for Combined<W> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            queue: Arc::clone(&self.queue),
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

impl<W: Write> Combined<W> {
    fn new(writer: W) -> Self {
        Self {
            writer,
            queue: Arc::default(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<W::Item, W::Outcome>> {
        // Pushes and takes leave the queue whole even if a holder panicked.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `item`, with whatever else waits, once a command slot is free, and returns this
    /// item's outcome.
    async fn write(&self, item: W::Item) -> mongodb::error::Result<W::Outcome> {
        let (outcome, mut done) = oneshot::channel();
        let seq = {
            let mut queue = self.queue();
            let seq = queue.next_seq;
            queue.next_seq += 1;
            queue.waiting.push_back(Waiting { seq, item, outcome });
            seq
        };
        loop {
            let slot = tokio::select! {
                biased;
                // Taken and written with another caller's batch while we waited for a slot.
                outcome = &mut done => return received(outcome),
                slot = Arc::clone(&self.in_flight).acquire_owned() => {
                    slot.map_err(|_| Error::custom("write queue closed"))?
                }
            };
            let (batch, ours_waits) = {
                let mut queue = self.queue();
                let batch = queue.take(W::MAX_BATCH);
                (batch, queue.holds(seq))
            };
            if !batch.is_empty() {
                // The write runs on its own, so that a caller that goes away mid-write (its
                // request was cancelled) does not take the others' outcomes with it.
                let writer = self.writer.clone();
                tokio::spawn(
                    async move {
                        let (items, senders): (Vec<_>, Vec<_>) =
                            batch.into_iter().map(|w| (w.item, w.outcome)).unzip();
                        let outcomes = writer.write(items).await;
                        for (sender, outcome) in senders.into_iter().zip(outcomes) {
                            // A caller that went away no longer wants its outcome.
                            let _ = sender.send(outcome);
                        }
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

fn received<O>(
    outcome: Result<mongodb::error::Result<O>, oneshot::error::RecvError>,
) -> mongodb::error::Result<O> {
    outcome.map_err(|_| Error::custom("command abandoned: its batch's task ended"))?
}
