//! The transactional outbox: an entity change and the event describing it commit together in
//! MongoDB, and a relay publishes pending events to JetStream in order and marks them sent.
//!
//! If the process dies after the commit and before the publish, the event is still pending
//! and the next relay (after restart, or another replica) publishes it. A relay that crashes
//! after publishing and before marking re-publishes with the same `Nats-Msg-Id`, which
//! JetStream drops as a duplicate.

use std::sync::Arc;
use std::time::Duration;

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
        }
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
        self.events.insert_one(doc).session(session).await?;
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

    /// Publishes what is pending, oldest first, and marks it sent; returns how many.
    pub async fn relay_once(&self, bus: &EventBus) -> anyhow::Result<usize> {
        let batch: Vec<OutboxDoc> = self
            .events
            .find(doc! { "sentAt": null })
            .sort(doc! { "_id": 1 })
            .limit(BATCH)
            .await?
            .try_collect()
            .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        // Send the whole batch, then wait for the acks: one round trip per batch, not per event.
        let mut acks = Vec::with_capacity(batch.len());
        for event in &batch {
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
            acks.push((event.id, subject, ack));
        }
        let mut sent = Vec::with_capacity(acks.len());
        for (id, subject, ack) in acks {
            match ack.await {
                Ok(()) => {
                    bus.metrics().published(subject);
                    sent.push(id);
                }
                Err(error) => {
                    bus.metrics().publish_failed(subject);
                    // Later events may already be out; they carry versions, so consumers
                    // order them. The failed one stays pending and goes out on the next pass.
                    tracing::warn!(error = ?error, "publish not acknowledged");
                    break;
                }
            }
        }
        let count = sent.len();
        if !sent.is_empty() {
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
        }
        Ok(count)
    }

    /// The relay as a background task: drains the outbox whenever woken or every poll
    /// interval, and backs off while NATS or MongoDB is unavailable.
    pub fn relay(self, bus: EventBus) -> BackgroundTask {
        Box::new(move |shutdown: CancellationToken| {
            Box::pin(async move {
                let mut backoff = Duration::from_millis(100);
                loop {
                    // `notify_one` keeps a permit when nobody waits, so a commit during the drain
                    // wakes the next wait instead of being missed.
                    let woken = self.wake.notified();
                    match self.relay_once(&bus).await {
                        Ok(n) if n > 0 => {
                            backoff = Duration::from_millis(100);
                            continue;
                        }
                        Ok(_) => {
                            backoff = Duration::from_millis(100);
                            tokio::select! {
                                () = woken => {}
                                () = tokio::time::sleep(POLL_INTERVAL) => {}
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
