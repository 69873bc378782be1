//! The outbox: a change carries the event that describes it inside the changed document, so
//! the change and its event are one write; the relay (`relay.rs`) publishes pending events to
//! JetStream and removes them from their documents.
//!
//! A single-document write is atomic in MongoDB, so a change to one document needs no
//! transaction to keep its event ([`Outbox::insert`], [`Outbox::update`]). A change that spans
//! several documents runs in a transaction and puts its event in one of them
//! ([`PendingEvent::update`], then [`Outbox::written`] after the commit).
//!
//! If the process dies after the write and before the publish, the event is still in the
//! document and the next relay's scan (after restart, or another replica's) publishes it. A
//! relay that crashes after publishing and before removing re-publishes with the same
//! `Nats-Msg-Id`, which JetStream drops as a duplicate.
//!
//! One process's events go out in the order their writes were handed over, with one
//! exception: an event left to the scan (its publish failed, or the relay forgot it) can go out
//! after a later one sent from memory. Consumers order what is left by the events' versions.

mod legacy;
mod relay;
mod sent;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::catalog::Event;
use crate::mongo::{Inserts, Updates};
use legacy::LEGACY;
use sent::Sent;

/// The field of a document that holds its events until the relay has published them.
pub const PENDING_EVENTS: &str = "pendingEvents";
/// The ids of a document's pending events: the key of the scan's partial index.
const PENDING_EVENT_IDS: &str = "pendingEvents.id";

/// Matches the documents that hold pending events: the filter of the scan, of the backlog's
/// count and of the index they both use (a query must repeat it to use a partial index).
fn holding_events() -> Document {
    doc! { PENDING_EVENT_IDS: { "$exists": true } }
}

/// Most events one relay pass reads and sends.
const BATCH: usize = 500;
/// How long a written event is held in memory. Not sent by then (NATS is down), it is left to
/// the scan, so that an outage does not grow the process without bound.
const FORGET_AFTER: Duration = Duration::from_secs(5);

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
    /// Guarded updates of each of [`Outbox::collections`], combined likewise.
    updates: Arc<[Updates]>,
    wake: Arc<Notify>,
    /// Events written by this process, in the order they were handed over, until the relay has
    /// sent them or they are [`FORGET_AFTER`] old.
    written: Arc<Mutex<VecDeque<(Pending, Instant)>>>,
    /// Events this process sent lately (removed from their documents, or about to be), which
    /// the scan skips.
    removed: Arc<Mutex<Removed>>,
    /// Events the relay sent from memory, removed from their documents a moment later.
    sent: Arc<Mutex<Sent>>,
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
            updates: collections.iter().map(Updates::new).collect(),
            collections,
            wake: Arc::new(Notify::new()),
            written: Arc::default(),
            removed: Arc::default(),
            sent: Arc::default(),
        }
    }

    fn removed_events(&self) -> std::sync::MutexGuard<'_, Removed> {
        // Hints too: an event missing from it is at worst sent twice, which JetStream drops.
        self.removed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sent_events(&self) -> std::sync::MutexGuard<'_, Sent> {
        // Hints as well: an event dropped from it stays in its document for the scan.
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
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
        let pending = self.event(event)?;
        let update = pending.update(set)?;
        self.apply(collection, id, guard, update, Some(pending))
            .await
    }

    /// The combined guarded updates of `collection` (one of [`Outbox::collections`]), for a
    /// store's writes that carry no event, so that they share commands with those that do.
    pub fn updates<T: Send + Sync>(&self, collection: &Collection<T>) -> Option<Updates> {
        self.updates.get(self.index_of(collection)?).cloned()
    }

    /// Applies `update` (update operators) to the document `id` of `collection` if it also
    /// matches `guard`, and hands `event`, which `update` must write (made with
    /// [`PendingEvent::update`]), to the relay once it has; false when no document matched
    /// (nothing was written, nothing inserted). Concurrent updates of one collection are
    /// written together ([`Updates`]); each caller learns whether its own matched.
    pub async fn apply<T: Send + Sync>(
        &self,
        collection: &Collection<T>,
        id: impl Into<Bson>,
        guard: Document,
        update: Document,
        event: Option<PendingEvent>,
    ) -> mongodb::error::Result<bool> {
        let id = id.into();
        let Some(index) = self.index_of(collection) else {
            return Err(mongodb::error::Error::custom(format!(
                "{} is not among the outbox's collections",
                collection.name()
            )));
        };
        let Some(updates) = self.updates.get(index) else {
            return Err(mongodb::error::Error::custom("no updates for a collection"));
        };
        if !updates.update(id.clone(), guard, update).await? {
            return Ok(false);
        }
        if let Some(event) = event {
            self.hand_over(index, id, event);
        }
        Ok(true)
    }

    /// How many events wait in their documents: committed and not yet published, or published
    /// and not yet removed (a moment, `sent.rs`).
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
}

/// How long the relay remembers the events it sent, from their sending.
const REMEMBER_REMOVED: Duration = Duration::from_secs(10);

/// The events a relay sent in the last [`REMEMBER_REMOVED`], removed from their documents or
/// about to be (`sent.rs`). The scan reads majority-committed data, and a removal (written
/// `w: 1`) may not be that yet: without this the scan would send them again.
#[derive(Debug, Default)]
struct Removed {
    order: VecDeque<(ObjectId, Instant)>,
    ids: HashSet<ObjectId>,
}

impl Removed {
    fn add(&mut self, ids: impl IntoIterator<Item = ObjectId>, now: Instant) {
        for id in ids {
            if self.ids.insert(id) {
                self.order.push_back((id, now));
            }
        }
        while let Some((id, at)) = self.order.front().copied() {
            if now.duration_since(at) <= REMEMBER_REMOVED {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }

    fn contains(&self, id: &ObjectId) -> bool {
        self.ids.contains(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_events_are_remembered_for_a_while_then_forgotten() {
        let start = Instant::now();
        let (first, second) = (ObjectId::new(), ObjectId::new());
        let mut removed = Removed::default();
        removed.add([first], start);
        removed.add([second], start + REMEMBER_REMOVED);
        assert!(removed.contains(&first) && removed.contains(&second));
        removed.add([], start + REMEMBER_REMOVED + Duration::from_millis(1));
        assert!(
            !removed.contains(&first),
            "forgotten after REMEMBER_REMOVED"
        );
        assert!(removed.contains(&second));
        assert_eq!(removed.order.len(), removed.ids.len());
    }
}
