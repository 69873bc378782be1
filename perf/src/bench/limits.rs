//! The limits the endpoints are compared with, measured in the same run with the same
//! concurrency: raw MongoDB `insert_one` / `find_one` with the Rust driver on the stack's
//! server, raw JetStream publish-with-ack on the stack's NATS, argon2id verification with
//! auth's parameters (the bare handler is `bare.rs`'s). Everything they create is throwaway and removed afterwards.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use async_nats::jetstream;
use auth::PasswordHasher;
use bytes::Bytes;
use indicatif::ProgressBar;
use mongodb::bson::{Document, doc, oid::ObjectId};
use serde_json::json;

use super::load::{Measured, Recorder, Timing, Worker, closed_loop};
use crate::throwaway::{self, DatabaseAndStream, StackNats};

/// Name of the MongoDB insert limit.
pub(crate) const MONGO_INSERT: &str = "mongo-insert";
/// Name of the MongoDB find limit.
pub(crate) const MONGO_FIND: &str = "mongo-find-one";
/// Name of the JetStream publish limit.
pub(crate) const JETSTREAM_PUBLISH: &str = "jetstream-publish";
/// Name of the insert-then-publish limit: the least one write with its event costs.
pub(crate) const INSERT_PUBLISH: &str = "mongo-insert+publish";
/// Name of the argon2id limit.
pub(crate) const ARGON2_VERIFY: &str = "argon2-verify";
/// Name of the replication floor (`crate::lag::floor`): the least a replicated write's lag can
/// be on these servers.
pub(crate) const REPLICATION_FLOOR: &str = "replication-floor";

/// Documents the find limit reads from, by id in turn.
const FIND_DOCUMENTS: usize = 1000;

fn short(error: impl std::fmt::Display) -> String {
    error.to_string().chars().take(80).collect()
}

struct InsertWorker {
    collection: mongodb::Collection<Document>,
    n: u64,
}

impl InsertWorker {
    async fn insert(&mut self) -> Result<(), String> {
        self.n += 1;
        self.collection
            .insert_one(throwaway::ticket_document(self.n))
            .await
            .map(drop)
            .map_err(|e| format!("mongodb: {}", short(e)))
    }
}

impl Worker for InsertWorker {
    async fn step(&mut self, recorder: &mut Recorder) {
        let sent = Instant::now();
        let outcome = self.insert().await;
        recorder.record(sent, outcome);
    }
}

struct FindWorker {
    collection: mongodb::Collection<Document>,
    ids: Arc<Vec<ObjectId>>,
    n: usize,
}

impl Worker for FindWorker {
    async fn step(&mut self, recorder: &mut Recorder) {
        self.n = (self.n + 1) % self.ids.len();
        let sent = Instant::now();
        let result = self
            .collection
            .find_one(doc! { "_id": self.ids[self.n] })
            .await;
        let outcome = match result {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("mongodb: not found".to_owned()),
            Err(error) => Err(format!("mongodb: {}", short(error))),
        };
        recorder.record(sent, outcome);
    }
}

/// `mongo-insert` then `mongo-find-one` in a throwaway database, dropped afterwards.
pub(crate) async fn mongo(
    url: &str,
    clients: usize,
    timing: Timing,
    bars: impl Fn(&str) -> ProgressBar,
) -> anyhow::Result<(Measured, Measured)> {
    let database = throwaway::database(url, "").await?;
    let result = async {
        let collection = database.collection::<Document>("tickets");
        collection
            .insert_one(throwaway::ticket_document(0))
            .await
            .with_context(|| format!("insert into {url}"))?;
        let workers = (0..clients)
            .map(|i| InsertWorker {
                collection: collection.clone(),
                n: (i as u64) << 40,
            })
            .collect();
        let insert = closed_loop(workers, timing, &bars(MONGO_INSERT)).await;

        let found = database.collection::<Document>("find");
        let documents: Vec<Document> = (0..FIND_DOCUMENTS as u64)
            .map(|n| {
                let mut d = throwaway::ticket_document(n);
                d.insert("_id", ObjectId::new());
                d
            })
            .collect();
        let ids: Vec<ObjectId> = documents
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        found.insert_many(documents).await.context("seed find")?;
        let ids = Arc::new(ids);
        let workers = (0..clients)
            .map(|i| FindWorker {
                collection: found.clone(),
                ids: ids.clone(),
                n: i * FIND_DOCUMENTS / clients.max(1),
            })
            .collect();
        let find = closed_loop(workers, timing, &bars(MONGO_FIND)).await;
        anyhow::Ok((insert, find))
    }
    .await;
    throwaway::drop_database(&database).await?;
    result
}

struct PublishWorker {
    jetstream: jetstream::Context,
    subject: String,
    prefix: String,
    n: u64,
    payload: Bytes,
}

impl PublishWorker {
    async fn publish(&mut self) -> Result<(), String> {
        self.n += 1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}-{}", self.prefix, self.n).as_str(),
        );
        match self
            .jetstream
            .publish_with_headers(self.subject.clone(), headers, self.payload.clone())
            .await
        {
            Ok(ack) => ack
                .await
                .map(drop)
                .map_err(|e| format!("ack: {}", short(e))),
            Err(error) => Err(format!("publish: {}", short(error))),
        }
    }
}

impl Worker for PublishWorker {
    async fn step(&mut self, recorder: &mut Recorder) {
        let sent = Instant::now();
        let outcome = self.publish().await;
        recorder.record(sent, outcome);
    }
}

/// An insert, then the publish of its event once it is stored: what a write and its event
/// cost at the least, without an outbox (the event is not stored, nor removed after).
struct InsertPublishWorker {
    insert: InsertWorker,
    publish: PublishWorker,
}

impl Worker for InsertPublishWorker {
    async fn step(&mut self, recorder: &mut Recorder) {
        let sent = Instant::now();
        let outcome = match self.insert.insert().await {
            Ok(()) => self.publish.publish().await,
            Err(error) => Err(error),
        };
        recorder.record(sent, outcome);
    }
}

/// `jetstream-publish` into a throwaway stream configured like the event stream (file
/// storage, a duplicate window, message ids), deleted afterwards.
pub(crate) async fn jetstream_publish(
    nats: &StackNats,
    clients: usize,
    timing: Timing,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let (context, name) = throwaway::stream(nats).await?;
    let payload = event_payload();
    let workers = (0..clients)
        .map(|i| PublishWorker {
            jetstream: context.clone(),
            subject: format!("{name}.events.ticket.updated"),
            prefix: format!("{i}"),
            n: 0,
            payload: payload.clone(),
        })
        .collect();
    let measured = closed_loop(workers, timing, bar).await;
    context
        .delete_stream(&name)
        .await
        .with_context(|| format!("delete stream {name}"))?;
    Ok(measured)
}

/// `mongo-insert+publish`: each client inserts a ticket-sized document, then publishes an
/// event-sized message and awaits its ack; the database and stream are throwaway.
pub(crate) async fn insert_publish(
    mongo_url: &str,
    nats: &StackNats,
    clients: usize,
    timing: Timing,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let throwaway = DatabaseAndStream::create(mongo_url, nats, "publish").await?;
    let payload = event_payload();
    let collection = throwaway.database.collection::<Document>("tickets");
    let workers = (0..clients)
        .map(|i| InsertPublishWorker {
            insert: InsertWorker {
                collection: collection.clone(),
                n: (i as u64) << 40,
            },
            publish: PublishWorker {
                jetstream: throwaway.jetstream.clone(),
                subject: format!("{}.events.ticket.created", throwaway.stream),
                prefix: format!("{i}"),
                n: 0,
                payload: payload.clone(),
            },
        })
        .collect();
    let measured = closed_loop(workers, timing, bar).await;
    throwaway.remove().await?;
    Ok(measured)
}

/// About the size of a ticket event.
fn event_payload() -> Bytes {
    Bytes::from(
        json!({
            "id": ObjectId::new().to_hex(), "version": 1, "title": "bench limit",
            "price": 10.0, "userId": ObjectId::new().to_hex(),
        })
        .to_string(),
    )
}

struct VerifyWorker {
    hasher: PasswordHasher,
    hash: Arc<str>,
}

impl Worker for VerifyWorker {
    async fn step(&mut self, recorder: &mut Recorder) {
        let sent = Instant::now();
        let verified = self
            .hasher
            .verify("bench-password".to_owned(), Some(self.hash.to_string()))
            .await;
        let outcome = match verified {
            Ok(true) => Ok(()),
            Ok(false) => Err("argon2: mismatch".to_owned()),
            Err(error) => Err(format!("argon2: {}", short(error))),
        };
        recorder.record(sent, outcome);
    }
}

/// `argon2-verify`: auth's password check through auth's own hasher, so that its parameters,
/// concurrency and pooled memory are the ones measured — the ceiling of sign-in.
pub(crate) async fn argon2_verify(
    clients: usize,
    timing: Timing,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let hasher = PasswordHasher::new()?;
    let hash: Arc<str> = hasher.hash("bench-password".to_owned()).await?.into();
    let workers = (0..clients)
        .map(|_| VerifyWorker {
            hasher: hasher.clone(),
            hash: hash.clone(),
        })
        .collect();
    Ok(closed_loop(workers, timing, bar).await)
}
