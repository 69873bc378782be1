//! The outbox: a change carries the event that describes it inside the changed document, so
//! the change and its event are one write; a relay publishes pending events to JetStream and
//! removes them from their documents.
//!
//! A single-document write is atomic in MongoDB, so a change to one document needs no
//! transaction to keep its event ([`Outbox::insert`], [`Outbox::update`]). A change that spans
//! several documents runs in a transaction and puts its event in one of them
//! ([`PendingEvent::update`], then [`Outbox::written`] after the commit). Events used to go to
//! an `outbox` collection in a transaction with the change: three commands (the entity's
//! write, the event's insert, the commit) where one write does now, which took a ticket's
//! creation from 32 % to 49 % of a bare `insert_one` + publish on the same servers.
//!
//! If the process dies after the write and before the publish, the event is still in the
//! document and the next relay's scan (after restart, or another replica's) publishes it. A
//! relay that crashes after publishing and before removing re-publishes with the same
//! `Nats-Msg-Id`, which JetStream drops as a duplicate.
//!
//! The relay gets events two ways. Those written by this process are handed to it once their
//! write has committed and go out from memory, with no read. A scan of every document that
//! holds pending events, every 250 ms, finds the rest (left by a crash or by another replica).
//! The scan cannot be the fast path: removing an event deletes its key from the
//! `pending_events` index, and WiredTiger keeps deleted keys in memory until the next
//! checkpoint (up to a minute). A scan from the start of the index steps over every one of
//! them; at 500 ticket updates/s such scans were a third of mongod's CPU.
//!
//! One process's events go out in the order their writes were handed over, with one
//! exception: an event left to the scan (its publish failed, or the relay forgot it) can go out
//! after a later one sent from memory. After any failure the next pass is the scan, oldest
//! first, so a backlog drains in order; consumers order what is left by the events' versions.
//! Another replica's scan may publish an event this process still holds in memory; the second
//! publish carries the same message id and JetStream drops it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use mongodb::options::{Acknowledgment, IndexOptions, WriteConcern};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bus::EventBus;
use super::catalog::{Event, Subject};
use crate::mongo::Inserts;
use crate::server::BackgroundTask;

/// The field of a document that holds its events until the relay has published them.
pub const PENDING_EVENTS: &str = "pendingEvents";
/// The ids of a document's pending events: the key of the scan's partial index.
const PENDING_EVENT_IDS: &str = "pendingEvents.id";

/// Matches the documents that hold pending events: the filter of the scan, of the backlog's
/// count and of the index they both use (a query must repeat it to use a partial index).
fn holding_events() -> Document {
    doc! { PENDING_EVENT_IDS: { "$exists": true } }
}

/// Pending events are looked for at least this often, to pick up what a crashed process or
/// another replica left behind; a write wakes the relay at once.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const BATCH: usize = 500;
/// Where versions before events lived in their documents kept them, one document each.
const LEGACY: &str = "outbox";
/// How long a written event is held in memory. Not sent by then (NATS is down), it is left to
/// the scan, so that an outage does not grow the process without bound.
const FORGET_AFTER: Duration = Duration::from_secs(5);
/// The relay's first wait after a failure, doubled at each further one up to the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);

/// One event as it is stored in its document's [`PENDING_EVENTS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventDoc {
    /// Orders events: ids grow with the time they were made.
    id: ObjectId,
    subject: String,
    event_id: String,
    payload: String,
    created_at: DateTime,
    /// The trace of the change that made the event, handed on in the message's headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// An event made for a change, to be written into the changed document.
#[derive(Debug, Clone)]
pub struct PendingEvent(EventDoc);

impl PendingEvent {
    fn bson(&self) -> mongodb::error::Result<Bson> {
        mongodb::bson::to_bson(&self.0).map_err(|e| {
            mongodb::error::Error::custom(format!("store event {}: {e}", self.0.subject))
        })
    }

    /// The update that `$set`s `set` and appends this event to the document's pending events.
    pub fn update(&self, set: Document) -> mongodb::error::Result<Document> {
        Ok(doc! { "$set": set, "$push": { PENDING_EVENTS: self.bson()? } })
    }

    /// `document` with this event as its only pending one, to insert.
    pub fn insert_into(&self, mut document: Document) -> mongodb::error::Result<Document> {
        document.insert(PENDING_EVENTS, vec![self.bson()?]);
        Ok(document)
    }
}

/// An event whose write has committed, and where it waits.
#[derive(Debug, Clone)]
struct Pending {
    /// Index into [`Outbox::collections`].
    collection: usize,
    document: Bson,
    event: EventDoc,
}

/// A document as the scan reads it: its id and its pending events.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Holder {
    #[serde(rename = "_id")]
    id: Bson,
    #[serde(default)]
    pending_events: Vec<EventDoc>,
}

/// The collections whose documents hold a service's pending events, and the relay's memory of
/// what this process wrote.
#[derive(Clone)]
pub struct Outbox {
    collections: Arc<[Collection<Holder>]>,
    /// Inserts into each of [`Outbox::collections`], combined into batches under load.
    inserts: Arc<[Inserts]>,
    wake: Arc<Notify>,
    /// Events written by this process, in the order they were handed over, until the relay has
    /// sent them or they are [`FORGET_AFTER`] old.
    written: Arc<Mutex<VecDeque<(Pending, Instant)>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.collections.iter().map(Collection::name).collect();
        f.debug_struct("Outbox")
            .field("collections", &names)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox of the named collections of `db`: every collection whose documents carry
    /// events must be named here, or a crash would leave its events unpublished.
    pub fn new(db: &Database, collections: &[&str]) -> Self {
        let collections: Arc<[Collection<Holder>]> = collections
            .iter()
            .chain([&LEGACY])
            .map(|name| db.collection(name))
            .collect();
        Self {
            inserts: collections.iter().map(Inserts::new).collect(),
            collections,
            wake: Arc::new(Notify::new()),
            written: Arc::default(),
        }
    }

    fn written_events(&self) -> std::sync::MutexGuard<'_, VecDeque<(Pending, Instant)>> {
        // The list only holds hints (the scan finds every pending event anyway), so one left
        // half-updated by a panic is still fine to use.
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the index the scan relies on: only documents with pending events are in it.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        for collection in self.collections.iter() {
            let pending = IndexModel::builder()
                .keys(doc! { PENDING_EVENT_IDS: 1 })
                .options(
                    IndexOptions::builder()
                        .name("pending_events".to_owned())
                        .partial_filter_expression(holding_events())
                        .build(),
                )
                .build();
            collection.create_index(pending).await?;
        }
        self.adopt_legacy().await
    }

    /// Turns each event an earlier version left unsent in its `outbox` collection (one
    /// document per event, sent when `sentAt` is set) into a pending event of that same
    /// document, so that the scan publishes it like any other: an upgrade while NATS was down
    /// loses nothing. Runs at every start; once adopted, a document is left alone.
    async fn adopt_legacy(&self) -> mongodb::error::Result<()> {
        let Some(legacy) = self.collections.iter().find(|c| c.name() == LEGACY) else {
            return Ok(());
        };
        let event = doc! {
            "id": "$_id",
            "subject": "$subject",
            "eventId": "$eventId",
            "payload": "$payload",
            "createdAt": "$createdAt",
            "traceparent": "$traceparent",
        };
        let adopted = legacy
            .update_many(
                doc! { "sentAt": null, "subject": { "$exists": true }, PENDING_EVENTS: { "$exists": false } },
                vec![doc! { "$set": { PENDING_EVENTS: [event] } }],
            )
            .await?;
        if adopted.modified_count > 0 {
            tracing::warn!(
                count = adopted.modified_count,
                "unsent events of an earlier version adopted"
            );
        }
        Ok(())
    }

    /// Makes the stored form of `event`, to write with the change it describes.
    pub fn event<E: Event>(&self, event: &E) -> mongodb::error::Result<PendingEvent> {
        let payload = serde_json::to_string(event)
            .map_err(|e| mongodb::error::Error::custom(format!("serialize {}: {e}", E::SUBJECT)))?;
        Ok(PendingEvent(EventDoc {
            id: ObjectId::new(),
            subject: E::SUBJECT.token().to_owned(),
            event_id: event.event_id(),
            payload,
            created_at: DateTime::now(),
            traceparent: crate::telemetry::current_traceparent(),
        }))
    }

    /// Hands `event`, committed inside `document` of `collection`, to the relay and wakes it.
    /// Call only once the write has committed: the relay publishes from memory without
    /// reading it back. A write whose outcome is unknown is left to the scan.
    pub fn written<T: Send + Sync>(
        &self,
        collection: &Collection<T>,
        document: impl Into<Bson>,
        event: PendingEvent,
    ) {
        let Some(index) = self.index_of(collection) else {
            // A programming error; the event is not lost, but only a scan of that collection
            // would find it, and none runs.
            tracing::error!(
                collection = collection.name(),
                "events written to a collection the outbox does not scan"
            );
            return;
        };
        self.hand_over(index, document.into(), event);
    }

    /// [`written`](Self::written) for the `index`th of [`Outbox::collections`].
    fn hand_over(&self, index: usize, document: Bson, event: PendingEvent) {
        let pending = Pending {
            collection: index,
            document,
            event: event.0,
        };
        let now = Instant::now();
        {
            let mut written = self.written_events();
            forget_old(&mut written, now);
            written.push_back((pending, now));
        }
        self.wake.notify_one();
    }

    /// Where `collection` is among [`Outbox::collections`]; `None` is a programming error.
    /// Writes through the outbox use its own handle of the collection (the database's write
    /// concern), whatever options the caller's handle carries.
    fn index_of<T: Send + Sync>(&self, collection: &Collection<T>) -> Option<usize> {
        let index = self.collections.iter().position(|c| {
            c.name() == collection.name() && c.namespace().db == collection.namespace().db
        });
        debug_assert!(
            index.is_some(),
            "{} is not among the outbox's collections",
            collection.name()
        );
        index
    }

    /// Inserts `document` into `collection` with `event` pending inside it, and hands the
    /// event to the relay. Concurrent inserts into one collection are written together
    /// ([`Inserts`]); each caller gets its own document's outcome.
    pub async fn insert<T, E>(
        &self,
        collection: &Collection<T>,
        document: &T,
        event: &E,
    ) -> mongodb::error::Result<()>
    where
        T: Serialize + Send + Sync,
        E: Event,
    {
        let document = mongodb::bson::to_document(document).map_err(|e| {
            mongodb::error::Error::custom(format!("store {}: {e}", collection.name()))
        })?;
        let id = document
            .get("_id")
            .cloned()
            .ok_or_else(|| mongodb::error::Error::custom("a document with events needs an _id"))?;
        let pending = self.event(event)?;
        let document = pending.insert_into(document)?;
        // Looked up once: the insert and the hand-over both need it.
        let index = self.index_of(collection);
        match index.and_then(|i| Some((i, self.inserts.get(i)?))) {
            Some((index, inserts)) => {
                inserts.insert(document).await?;
                self.hand_over(index, id, pending);
            }
            None => {
                collection
                    .clone_with_type::<Document>()
                    .insert_one(document)
                    .await?;
                // Logs the programming error; the event waits for a scan that never comes.
                self.written(collection, id, pending);
            }
        }
        Ok(())
    }

    /// `$set`s `set` on the document `id` of `collection` if it also matches `guard`, appending
    /// `event` to its pending events, and hands the event to the relay; false when no document
    /// matched (nothing was written).
    pub async fn update<T, E>(
        &self,
        collection: &Collection<T>,
        id: impl Into<Bson>,
        guard: Document,
        set: Document,
        event: &E,
    ) -> mongodb::error::Result<bool>
    where
        T: Send + Sync,
        E: Event,
    {
        let id = id.into();
        let mut filter = guard;
        filter.insert("_id", id.clone());
        let pending = self.event(event)?;
        let result = collection.update_one(filter, pending.update(set)?).await?;
        if result.matched_count == 0 {
            return Ok(false);
        }
        self.written(collection, id, pending);
        Ok(true)
    }

    /// How many events are committed but not yet published.
    pub async fn pending(&self) -> mongodb::error::Result<u64> {
        let mut total = 0;
        for collection in self.collections.iter() {
            let mut counts = collection
                .aggregate([
                    doc! { "$match": holding_events() },
                    doc! { "$group": { "_id": null, "n": { "$sum": { "$size": format!("${PENDING_EVENTS}") } } } },
                ])
                .await?;
            if let Some(count) = counts.try_next().await? {
                total += match count.get("n") {
                    Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                    Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                    _ => 0,
                };
            }
        }
        Ok(total)
    }

    /// Publishes what is pending, oldest first, and removes it from its documents; returns how
    /// many. This is the scan: it finds events whoever wrote them.
    pub async fn relay_once(&self, bus: &EventBus) -> anyhow::Result<usize> {
        Ok(self.scan(bus).await?.0)
    }

    /// [`relay_once`](Self::relay_once), and whether more may be pending: a batch was full and
    /// something in it could be sent (a batch of events only a newer version knows must not
    /// have the relay scan again at once, forever).
    async fn scan(&self, bus: &EventBus) -> anyhow::Result<(usize, bool)> {
        let mut batch = Vec::new();
        let mut full = false;
        for (index, collection) in self.collections.iter().enumerate() {
            let holders: Vec<Holder> = collection
                .find(holding_events())
                .projection(doc! { PENDING_EVENTS: 1 })
                .sort(doc! { PENDING_EVENT_IDS: 1 })
                .limit(BATCH as i64)
                .await?
                .try_collect()
                .await?;
            full |= holders.len() >= BATCH;
            for holder in holders {
                batch.extend(holder.pending_events.into_iter().map(|event| Pending {
                    collection: index,
                    document: holder.id.clone(),
                    event,
                }));
            }
        }
        batch.sort_by_key(|pending| pending.event.id);
        if batch.len() > BATCH {
            batch.truncate(BATCH);
            full = true;
        }
        let sent = self.send(bus, batch).await?;
        Ok((sent, full && sent > 0))
    }

    /// Publishes the events this process wrote, in the order they were handed over, from
    /// memory; returns how many. Events written elsewhere are left to
    /// [`relay_once`](Self::relay_once).
    pub async fn relay_written(&self, bus: &EventBus) -> anyhow::Result<usize> {
        let batch: Vec<Pending> = {
            let mut written = self.written_events();
            forget_old(&mut written, Instant::now());
            written
                .iter()
                .take(BATCH)
                .map(|(pending, _)| pending.clone())
                .collect()
        };
        self.send(bus, batch).await
    }

    /// Publishes `batch` in its order and removes what was acknowledged from its documents;
    /// returns how many, or the failure of an acknowledgement once what came before it is
    /// removed.
    async fn send(&self, bus: &EventBus, batch: Vec<Pending>) -> anyhow::Result<usize> {
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
                .inspect_err(|_| bus.metrics().publish_failed(subject))?;
            tracing::info!(%subject, event_id = %event.event_id, "published");
            acks.push((pending, subject, ack));
        }
        let mut sent = Vec::with_capacity(acks.len());
        let mut failed = None;
        for (pending, subject, ack) in acks {
            match ack.await {
                Ok(()) => {
                    bus.metrics().published(subject);
                    sent.push(pending);
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
        let done: HashSet<ObjectId> = sent.iter().map(|pending| pending.event.id).collect();
        self.written_events()
            .retain(|(pending, _)| !done.contains(&pending.event.id));
        self.remove(sent).await?;
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

    /// The relay as a background task: sends this process's events as soon as their write
    /// wakes it, scans for every pending event each poll interval and after any failure, and
    /// backs off while NATS or MongoDB is unavailable.
    pub fn relay(self, bus: EventBus) -> BackgroundTask {
        Box::new(move |shutdown: CancellationToken| {
            Box::pin(async move {
                let mut backoff = FIRST_BACKOFF;
                let mut schedule = Schedule::new(tokio::time::Instant::now());
                loop {
                    // `notify_one` keeps a permit when nobody waits, so a write during the drain
                    // wakes the next wait instead of being missed.
                    let woken = self.wake.notified();
                    let mut reconnected = bus.reconnections();
                    let pass = schedule.next(tokio::time::Instant::now());
                    let result = match pass {
                        Pass::Scan => self.scan(&bus).await,
                        Pass::Written => self.relay_written(&bus).await.map(|n| (n, false)),
                    };
                    let more = result.as_ref().ok().map(|&(_, more)| more);
                    schedule.done(pass, more, tokio::time::Instant::now());
                    match result {
                        Ok((sent, _)) => {
                            backoff = FIRST_BACKOFF;
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
                                () = tokio::time::sleep(backoff) => {
                                    backoff = (backoff * 2).min(LONGEST_BACKOFF);
                                }
                                // NATS is back (perhaps the failure itself): send at once.
                                _ = reconnected.changed() => backoff = FIRST_BACKOFF,
                                () = shutdown.cancelled() => return Ok(()),
                            }
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

/// Drops the written events older than [`FORGET_AFTER`] (they are in push order).
fn forget_old(written: &mut VecDeque<(Pending, Instant)>, now: Instant) {
    while written
        .front()
        .is_some_and(|(_, at)| now.duration_since(*at) > FORGET_AFTER)
    {
        written.pop_front();
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
