//! The transactional outbox: an entity change and the event describing it commit together in
//! MongoDB, and a relay publishes pending events to JetStream and marks them sent.
//!
//! If the process dies after the commit and before the publish, the event is still pending
//! and the next relay (after restart, or another replica) publishes it. A relay that crashes
//! after publishing and before marking re-publishes with the same `Nats-Msg-Id`, which
//! JetStream drops as a duplicate.
//!
//! The relay looks events up two ways. Those recorded by this process are fetched by id, right
//! after their commit. A scan of every pending event, every 250 ms, finds the rest
//! (left by a crash or by another replica). The scan cannot be the fast path: marking an event
//! sent deletes its key from the `pending` index, and WiredTiger keeps deleted keys in memory
//! until the next checkpoint (up to a minute). A scan from the start of the index steps over
//! every one of them. At 500 ticket updates/s those scans were a third of mongod's CPU.
//!
//! One process's events go out in commit order, with one exception: an event left to the scan
//! (its publish failed, or its commit took longer than the relay remembers ids) can go out
//! after a later one sent by id. After any failure the next pass is the scan, oldest first, so
//! a backlog drains in order; consumers order what is left by the events' versions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt as _;
use mongodb::bson::{DateTime, doc, oid::ObjectId};
use mongodb::options::{Acknowledgment, IndexOptions, WriteConcern};
use mongodb::{ClientSession, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bus::EventBus;
use super::catalog::{Event, Subject};
use crate::server::BackgroundTask;

/// Pending events are looked for at least this often, to pick up what a crashed process or
/// another replica left behind; a local commit wakes the relay at once.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const BATCH: i64 = 500;
/// How long a recorded event is looked for by id. Not found by then (its transaction aborted,
/// or has not committed yet), it is left to the scan.
const FORGET_AFTER: Duration = Duration::from_secs(5);
/// Sent events are kept a day for inspection, then MongoDB removes them.
const KEEP_SENT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutboxDoc {
    #[serde(rename = "_id")]
    id: ObjectId,
    subject: String,
    event_id: String,
    payload: String,
    created_at: DateTime,
    #[serde(default)]
    sent_at: Option<DateTime>,
    /// The trace of the change that recorded the event, handed on in the message's headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// A service's outbox collection and the signal that wakes its relay.
#[derive(Clone)]
pub struct Outbox {
    events: Collection<OutboxDoc>,
    wake: Arc<Notify>,
    /// Events recorded by this process, oldest first, until the relay has sent them or they
    /// are [`FORGET_AFTER`] old.
    recorded: Arc<Mutex<VecDeque<(ObjectId, Instant)>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("collection", &self.events.name())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// The `outbox` collection of `db`.
    pub fn new(db: &Database) -> Self {
        Self {
            events: db.collection("outbox"),
            wake: Arc::new(Notify::new()),
            recorded: Arc::default(),
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, VecDeque<(ObjectId, Instant)>> {
        // The list only holds hints (the scan finds every pending event anyway), so one left
        // half-updated by a panic is still fine to use.
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the indexes the relay relies on.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let pending = IndexModel::builder()
            .keys(doc! { "sentAt": 1, "_id": 1 })
            .options(IndexOptions::builder().name("pending".to_owned()).build())
            .build();
        let expire = IndexModel::builder()
            .keys(doc! { "sentAt": 1 })
            .options(
                IndexOptions::builder()
                    .name("expire_sent".to_owned())
                    .expire_after(KEEP_SENT)
                    .build(),
            )
            .build();
        self.events.create_indexes([pending, expire]).await?;
        Ok(())
    }

    /// Records `event` inside the caller's transaction; it is published after the commit.
    pub async fn record<E: Event>(
        &self,
        session: &mut ClientSession,
        event: &E,
    ) -> mongodb::error::Result<()> {
        let payload = serde_json::to_string(event)
            .map_err(|e| mongodb::error::Error::custom(format!("serialize {}: {e}", E::SUBJECT)))?;
        let doc = OutboxDoc {
            id: ObjectId::new(),
            subject: E::SUBJECT.token().to_owned(),
            event_id: event.event_id(),
            payload,
            created_at: DateTime::now(),
            sent_at: None,
            traceparent: crate::telemetry::current_traceparent(),
        };
        let id = doc.id;
        self.events.insert_one(doc).session(session).await?;
        // Remembered before the commit, which may still fail: the relay looks the id up and
        // finds it only once committed.
        let now = Instant::now();
        let mut recorded = self.recorded();
        forget_old(&mut recorded, now);
        recorded.push_back((id, now));
        Ok(())
    }

    /// Tells the relay that something was committed; call after a successful commit.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// How many events are committed but not yet published.
    pub async fn pending(&self) -> mongodb::error::Result<u64> {
        self.events.count_documents(doc! { "sentAt": null }).await
    }

    /// Publishes what is pending, oldest first, and marks it sent; returns how many. This is
    /// the scan: it finds events whoever recorded them.
    pub async fn relay_once(&self, bus: &EventBus) -> anyhow::Result<usize> {
        Ok(self.scan(bus).await?.0)
    }

    /// [`relay_once`](Self::relay_once), and whether more may be pending: the batch was full
    /// and something in it could be sent (a batch of events only a newer version knows must
    /// not have the relay scan again at once, forever).
    async fn scan(&self, bus: &EventBus) -> anyhow::Result<(usize, bool)> {
        let batch: Vec<OutboxDoc> = self
            .events
            .find(doc! { "sentAt": null })
            .sort(doc! { "_id": 1 })
            .limit(BATCH)
            .await?
            .try_collect()
            .await?;
        let full = batch.len() >= BATCH as usize;
        let sent = self.send(bus, batch).await?;
        Ok((sent, full && sent > 0))
    }

    /// Publishes the committed, still pending events that this process recorded, oldest
    /// first, found by id; returns how many. Events recorded elsewhere are left to
    /// [`relay_once`](Self::relay_once).
    pub async fn relay_recorded(&self, bus: &EventBus) -> anyhow::Result<usize> {
        let ids: Vec<ObjectId> = {
            let mut recorded = self.recorded();
            forget_old(&mut recorded, Instant::now());
            recorded
                .iter()
                .take(BATCH as usize)
                .map(|(id, _)| *id)
                .collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let batch: Vec<OutboxDoc> = self
            .events
            .find(doc! { "_id": { "$in": ids }, "sentAt": null })
            .sort(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        self.send(bus, batch).await
    }

    /// Publishes `batch` in its order and marks what was acknowledged sent; returns how many,
    /// or the failure of an acknowledgement once what came before it is marked.
    async fn send(&self, bus: &EventBus, batch: Vec<OutboxDoc>) -> anyhow::Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        // Send the whole batch, then wait for the acks: one round trip per batch, not per event.
        let mut acks = Vec::with_capacity(batch.len());
        for event in batch {
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
                    Bytes::from(event.payload),
                )
                .await
                .inspect_err(|_| bus.metrics().publish_failed(subject))?;
            tracing::info!(%subject, event_id = %event.event_id, "published");
            acks.push((event.id, subject, ack));
        }
        let mut sent = Vec::with_capacity(acks.len());
        let mut failed = None;
        for (id, subject, ack) in acks {
            match ack.await {
                Ok(()) => {
                    bus.metrics().published(subject);
                    sent.push(id);
                }
                Err(error) => {
                    bus.metrics().publish_failed(subject);
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
        let done: std::collections::HashSet<ObjectId> = sent.iter().copied().collect();
        self.recorded().retain(|(id, _)| !done.contains(id));
        // Acknowledged by the primary without waiting for the journal: a mark lost in a
        // crash only means the event is published again, which JetStream drops as a
        // duplicate (and consumers are idempotent anyway). Waiting for the journal held
        // every event committed meanwhile back by a journal flush.
        self.events
            .update_many(
                doc! { "_id": { "$in": sent } },
                doc! { "$set": { "sentAt": DateTime::now() } },
            )
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Nodes(1))
                    .journal(false)
                    .build(),
            )
            .await?;
        failed.map_or(Ok(count), Err)
    }

    /// The relay as a background task: sends this process's events as soon as their commit
    /// wakes it, scans for every pending event each poll interval and after any failure, and
    /// backs off while NATS or MongoDB is unavailable.
    pub fn relay(self, bus: EventBus) -> BackgroundTask {
        Box::new(move |shutdown: CancellationToken| {
            Box::pin(async move {
                let mut backoff = Duration::from_millis(100);
                let mut schedule = Schedule::new(tokio::time::Instant::now());
                loop {
                    // `notify_one` keeps a permit when nobody waits, so a commit during the drain
                    // wakes the next wait instead of being missed.
                    let woken = self.wake.notified();
                    let pass = schedule.next(tokio::time::Instant::now());
                    let result = match pass {
                        Pass::Scan => self.scan(&bus).await,
                        Pass::Recorded => self.relay_recorded(&bus).await.map(|n| (n, false)),
                    };
                    let more = result.as_ref().ok().map(|&(_, more)| more);
                    schedule.done(pass, more, tokio::time::Instant::now());
                    match result {
                        Ok((sent, _)) => {
                            backoff = Duration::from_millis(100);
                            if sent > 0 {
                                continue;
                            }
                            tokio::select! {
                                () = woken => {}
                                () = tokio::time::sleep_until(schedule.scan_at()) => {}
                                () = shutdown.cancelled() => return Ok(()),
                            }
                        }
                        Err(error) => {
                            tracing::warn!(error = ?error, retry_in_ms = backoff.as_millis() as u64, "outbox relay failed");
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {}
                                () = shutdown.cancelled() => return Ok(()),
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                }
            })
        })
    }
}

/// Drops the remembered ids older than [`FORGET_AFTER`] (they are in push order).
fn forget_old(recorded: &mut VecDeque<(ObjectId, Instant)>, now: Instant) {
    while recorded
        .front()
        .is_some_and(|(_, at)| now.duration_since(*at) > FORGET_AFTER)
    {
        recorded.pop_front();
    }
}

/// The relay's two kinds of pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every pending event, oldest first.
    Scan,
    /// This process's recorded events, by id.
    Recorded,
}

/// When the relay scans: first, every poll interval, at once again after a full batch, and
/// after any failure (so that a backlog goes out oldest first); by id otherwise.
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
            Pass::Recorded
        }
    }

    /// After `pass`: `more` is `None` when it failed, else whether a scan left more behind.
    fn done(&mut self, pass: Pass, more: Option<bool>, now: tokio::time::Instant) {
        match (pass, more) {
            (_, None) | (Pass::Scan, Some(true)) => self.scan_at = now,
            (Pass::Scan, Some(false)) => self.scan_at = now + POLL_INTERVAL,
            (Pass::Recorded, Some(_)) => {}
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
    fn the_relay_scans_first_then_each_poll_interval_and_sends_by_id_in_between() {
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
            assert_eq!(schedule.next(at(ms)), Pass::Recorded, "at {ms} ms");
            schedule.done(Pass::Recorded, Some(false), at(ms));
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
        schedule.done(Pass::Recorded, None, at(20));
        assert_eq!(
            schedule.next(at(20)),
            Pass::Scan,
            "after a failed pass by id"
        );

        schedule.done(Pass::Scan, None, at(30));
        assert_eq!(schedule.next(at(30)), Pass::Scan, "after a failed scan");
    }
}
