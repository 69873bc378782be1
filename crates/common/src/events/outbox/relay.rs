//! The relay: publishes pending events to JetStream in order and removes them from their
//! documents — this process's own from memory once their write returned (removed a moment
//! later: `sent.rs`), everyone else's (a crash's, another replica's) by a scan of the outbox's
//! collections.
//!
//! The scan cannot be the fast path: removing an event deletes its key from the
//! `pending_events` index, and WiredTiger keeps deleted keys in memory until the next
//! checkpoint, so a scan from the start of the index steps over every one of them. It runs each
//! [`POLL_INTERVAL`], and after any failure so that a backlog drains oldest first.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt as _;
use mongodb::bson::{Bson, doc, oid::ObjectId};
use mongodb::options::{Acknowledgment, ReadConcern, WriteConcern};
use tokio_util::sync::CancellationToken;

use super::{
    BATCH, Holder, Outbox, PENDING_EVENT_IDS, PENDING_EVENTS, Pending, forget_old, holding_events,
};
use crate::backoff::Backoff;
use crate::events::bus::EventBus;
use crate::events::catalog::Subject;
use crate::task::BackgroundTask;

/// Pending events are looked for at least this often, to pick up what a crashed process or
/// another replica left behind; a write wakes the relay at once.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The background scan leaves events younger than this (1–2 s, by their ids' whole seconds)
/// to the process that wrote them, which sends them from memory and removes them a moment
/// later (`sent.rs`): every replica scans, and only the writer knows what it already sent.
const SCAN_GRACE: Duration = Duration::from_secs(2);
/// How long a stopping relay tries to remove what it sent.
const SHUTDOWN_REMOVAL: Duration = Duration::from_secs(2);

impl Outbox {
    /// Publishes what is pending, oldest first, and removes it from its documents; returns how
    /// many. This is the scan: it finds events whoever wrote them, however young.
    pub async fn relay_once(&self, bus: &EventBus) -> anyhow::Result<usize> {
        Ok(self.scan(bus, Duration::ZERO).await?.0)
    }

    /// [`relay_once`](Self::relay_once) for events made at least `grace` ago (to whole
    /// seconds), and whether more may be pending: a batch was full and something in it could
    /// be sent (a batch of events only a newer version knows must not have the relay scan
    /// again at once, forever).
    async fn scan(&self, bus: &EventBus, grace: Duration) -> anyhow::Result<(usize, bool)> {
        // Event ids are ObjectIds: they carry the second they were made.
        let made_before = std::time::SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut batch = Vec::new();
        let mut full = false;
        for (index, collection) in self.collections.iter().enumerate() {
            // Majority-committed events only: another replica's write still in flight may be
            // rolled back by an election, and an event published for it could not be taken
            // back (its version would name a change that never happened). Its writer sends it
            // from memory once the write is acknowledged, and a later scan finds it otherwise.
            // What this process removed lately may still show here; it is skipped below.
            // No bound on the ids in the query: on this multikey index a range would make the
            // server sort every match in memory instead of reading the index in order. The
            // oldest come first, so the young ones left out below never hide older ones.
            let holders: Vec<Holder> = collection
                .find(holding_events())
                .read_concern(ReadConcern::majority())
                .projection(doc! { PENDING_EVENTS: 1 })
                .sort(doc! { PENDING_EVENT_IDS: 1 })
                .limit(BATCH as i64)
                .await?
                .try_collect()
                .await?;
            full |= holders.len() >= BATCH;
            for holder in holders {
                let made = holder.pending_events.into_iter();
                let old = made.filter(|event| event.id.timestamp().to_system_time() <= made_before);
                batch.extend(old.map(|event| Pending {
                    collection: index,
                    document: holder.id.clone(),
                    event,
                }));
            }
        }
        {
            let removed = self.removed_events();
            batch.retain(|pending| !removed.contains(&pending.event.id));
        }
        batch.sort_by_key(|pending| pending.event.id);
        if batch.len() > BATCH {
            batch.truncate(BATCH);
            full = true;
        }
        let sent = self.send(bus, batch, Removal::AtOnce).await?;
        Ok((sent, full && sent > 0))
    }

    /// Publishes the events this process wrote, in the order they were handed over, from
    /// memory, and removes them from their documents; returns how many. Events written
    /// elsewhere are left to [`relay_once`](Self::relay_once).
    pub async fn relay_written(&self, bus: &EventBus) -> anyhow::Result<usize> {
        self.send_written(bus, Removal::AtOnce).await
    }

    async fn send_written(&self, bus: &EventBus, removal: Removal) -> anyhow::Result<usize> {
        let batch: Vec<Pending> = {
            let mut written = self.written_events();
            forget_old(&mut written, Instant::now());
            written
                .iter()
                .take(BATCH)
                .map(|(pending, _)| pending.clone())
                .collect()
        };
        self.send(bus, batch, removal).await
    }

    /// Publishes `batch` in its order and removes what was acknowledged from its documents (at
    /// once, or a moment later: [`Sent`](super::sent::Sent)); returns how many, or the failure
    /// of an acknowledgement once what came before it is removed or queued for removal.
    async fn send(
        &self,
        bus: &EventBus,
        batch: Vec<Pending>,
        removal: Removal,
    ) -> anyhow::Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        // Send the whole batch, then wait for the acks: one round trip per batch, not per event.
        let mut acks = Vec::with_capacity(batch.len());
        for pending in batch {
            let event = &pending.event;
            let Some(subject) = Subject::from_token(&event.subject) else {
                // Written by a newer version of this service; leave it for that version.
                tracing::error!(subject = %event.subject, id = %event.id, "unknown subject in outbox");
                continue;
            };
            let ack = bus
                .publish_raw(
                    subject,
                    &event.event_id,
                    event.traceparent.as_deref(),
                    Bytes::from(event.payload.clone()),
                )
                .await
                .inspect_err(|_| bus.counters().publish_failed(subject))?;
            tracing::info!(%subject, event_id = %event.event_id, "published");
            acks.push((pending, subject, ack));
        }
        let mut sent = Vec::with_capacity(acks.len());
        let mut failed = None;
        for (pending, subject, ack) in acks {
            match ack.await {
                Ok(duplicate) => {
                    bus.counters().published(subject);
                    if duplicate {
                        // Sent before (a crash between the publish and the removal, or a lost
                        // acknowledgement): counted, so a relay that repeats itself shows.
                        bus.counters().duplicate(subject);
                    }
                    sent.push(pending);
                }
                Err(error) => {
                    bus.counters().publish_failed(subject);
                    // Later events may already be out; they carry versions, so consumers
                    // order them. The failed one stays pending for the scan.
                    failed = Some(error.context("publish not acknowledged"));
                    break;
                }
            }
        }
        let count = sent.len();
        if sent.is_empty() {
            return failed.map_or(Ok(0), Err);
        }
        let done: HashSet<ObjectId> = sent.iter().map(|pending| pending.event.id).collect();
        self.written_events()
            .retain(|(pending, _)| !done.contains(&pending.event.id));
        match removal {
            Removal::AtOnce => {
                self.remove(sent).await?;
                self.removed_events().add(done, Instant::now());
            }
            Removal::Later => {
                // Skipped by the scan from now on, though still in their documents.
                let now = Instant::now();
                self.removed_events().add(done, now);
                self.sent_events().add(sent, now);
            }
        }
        failed.map_or(Ok(count), Err)
    }

    /// Removes sent events from their documents, one command per collection.
    async fn remove(&self, sent: Vec<Pending>) -> mongodb::error::Result<()> {
        let mut by_collection: HashMap<usize, (Vec<Bson>, Vec<ObjectId>)> = HashMap::new();
        for pending in sent {
            let (documents, events) = by_collection.entry(pending.collection).or_default();
            documents.push(pending.document);
            events.push(pending.event.id);
        }
        for (index, (documents, events)) in by_collection {
            let Some(collection) = self.collections.get(index) else {
                continue;
            };
            // Acknowledged by the primary without waiting for the journal: a removal lost in a
            // crash only means the event is published again, which JetStream drops as a
            // duplicate (and consumers are idempotent anyway). Waiting for the journal held
            // every event written meanwhile back by a journal flush.
            collection
                .update_many(
                    doc! { "_id": { "$in": documents } },
                    doc! { "$pull": { PENDING_EVENTS: { "id": { "$in": events } } } },
                )
                .write_concern(
                    WriteConcern::builder()
                        .w(Acknowledgment::Nodes(1))
                        .journal(false)
                        .build(),
                )
                .await?;
        }
        Ok(())
    }

    /// Removes the sent events whose wait is over (all of them when `all`). A failure leaves
    /// them in their documents for the scan, once the relay has forgotten it removed them.
    async fn remove_sent(&self, all: bool) {
        let due = {
            let mut sent = self.sent_events();
            if all {
                sent.all()
            } else {
                sent.due(Instant::now())
            }
        };
        if due.is_empty() {
            return;
        }
        if let Err(error) = self.remove(due).await {
            tracing::warn!(error = ?error, "sent events not removed: the scan will");
        }
    }

    /// The relay as a background task: sends this process's events as soon as their write
    /// wakes it, scans for every pending event each poll interval and after any failure, and
    /// backs off while NATS or MongoDB is unavailable.
    pub fn relay(self, bus: EventBus) -> BackgroundTask {
        Box::new(move |shutdown: CancellationToken| {
            Box::pin(async move {
                let mut backoff = Backoff::default();
                let mut schedule = Schedule::new(tokio::time::Instant::now());
                loop {
                    // `notify_one` keeps a permit when nobody waits, so a write during the drain
                    // wakes the next wait instead of being missed.
                    let woken = self.wake.notified();
                    let mut reconnected = bus.reconnections();
                    let pass = schedule.next(tokio::time::Instant::now());
                    let result = match pass {
                        Pass::Scan => self.scan(&bus, SCAN_GRACE).await,
                        Pass::Written => self
                            .send_written(&bus, Removal::Later)
                            .await
                            .map(|n| (n, false)),
                    };
                    self.remove_sent(false).await;
                    let more = result.as_ref().ok().map(|&(_, more)| more);
                    schedule.done(pass, more, tokio::time::Instant::now());
                    match result {
                        Ok((sent, _)) => {
                            backoff.reset();
                            if sent > 0 {
                                continue;
                            }
                            let remove_at = self.sent_events().next_at();
                            tokio::select! {
                                () = woken => {}
                                () = tokio::time::sleep_until(schedule.scan_at()) => {}
                                () = sleep_until(remove_at) => {}
                                () = shutdown.cancelled() => break,
                            }
                        }
                        Err(error) => {
                            let wait = backoff.next_wait();
                            tracing::warn!(error = ?error, retry_in_ms = wait.as_millis() as u64, "outbox relay failed");
                            // What was sent need not wait out the backoff in its documents.
                            self.remove_sent(true).await;
                            tokio::select! {
                                () = tokio::time::sleep(wait) => {}
                                // NATS is back (perhaps the failure itself): send at once.
                                _ = reconnected.changed() => backoff.reset(),
                                () = shutdown.cancelled() => break,
                            }
                        }
                    }
                    if shutdown.is_cancelled() {
                        break;
                    }
                }
                // What was sent leaves its documents now, or the next relay sends it again.
                let _ = tokio::time::timeout(SHUTDOWN_REMOVAL, self.remove_sent(true)).await;
                Ok(())
            })
        })
    }
}

/// When sent events leave their documents.
#[derive(Debug, Clone, Copy)]
enum Removal {
    AtOnce,
    /// A moment later ([`Sent`](super::sent::Sent)): the relay's own pass from memory.
    Later,
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The relay's two kinds of pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every pending event, oldest first.
    Scan,
    /// This process's written events, from memory.
    Written,
}

/// When the relay scans: first, every poll interval, at once again after a full batch, and
/// after any failure (so that a backlog goes out oldest first); from memory otherwise.
#[derive(Debug)]
struct Schedule {
    scan_at: tokio::time::Instant,
}

impl Schedule {
    fn new(now: tokio::time::Instant) -> Self {
        Self { scan_at: now }
    }

    fn next(&self, now: tokio::time::Instant) -> Pass {
        if now >= self.scan_at {
            Pass::Scan
        } else {
            Pass::Written
        }
    }

    /// After `pass`: `more` is `None` when it failed, else whether a scan left more behind.
    fn done(&mut self, pass: Pass, more: Option<bool>, now: tokio::time::Instant) {
        match (pass, more) {
            (_, None) | (Pass::Scan, Some(true)) => self.scan_at = now,
            (Pass::Scan, Some(false)) => self.scan_at = now + POLL_INTERVAL,
            (Pass::Written, Some(_)) => {}
        }
    }

    /// When the next scan is due.
    fn scan_at(&self) -> tokio::time::Instant {
        self.scan_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_scans_first_then_each_poll_interval_and_sends_from_memory_in_between() {
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut schedule = Schedule::new(start);
        assert_eq!(
            schedule.next(start),
            Pass::Scan,
            "what a crash left goes first"
        );
        schedule.done(Pass::Scan, Some(false), at(1));
        for ms in [1, 100, 250] {
            assert_eq!(schedule.next(at(ms)), Pass::Written, "at {ms} ms");
            schedule.done(Pass::Written, Some(false), at(ms));
        }
        assert_eq!(schedule.next(at(251)), Pass::Scan);
        assert_eq!(schedule.scan_at(), at(251));
    }

    #[test]
    fn a_full_scan_or_any_failure_makes_the_next_pass_a_scan() {
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut schedule = Schedule::new(start);
        schedule.done(Pass::Scan, Some(true), at(5));
        assert_eq!(
            schedule.next(at(5)),
            Pass::Scan,
            "a full batch: more is pending"
        );

        schedule.done(Pass::Scan, Some(false), at(10));
        schedule.done(Pass::Written, None, at(20));
        assert_eq!(
            schedule.next(at(20)),
            Pass::Scan,
            "after a failed pass from memory"
        );

        schedule.done(Pass::Scan, None, at(30));
        assert_eq!(schedule.next(at(30)), Pass::Scan, "after a failed scan");
    }
}
