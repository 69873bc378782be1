//! The limits the endpoints are compared with, measured in the same run with the same
//! concurrency: raw MongoDB `insert_one` / `find_one` with the Rust driver on the stack's
//! server, raw JetStream publish-with-ack on the stack's NATS, argon2id verification with
//! auth's parameters, and a bare axum handler that verifies the same HS256 JWT cookie.
//! Everything they create is throwaway and removed afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use auth::PasswordHasher;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use common::MaybeCurrentUser;
use common::session::{SessionConfig, Sessions};
use hyper::header::HeaderValue;
use indicatif::ProgressBar;
use mongodb::bson::{Document, doc, oid::ObjectId};
use serde_json::json;

use super::http::{Conn, Target};
use super::load::{Measured, Recorder, Timing, Worker, closed_loop};
use super::scenarios::{HttpWorker, Plan};

/// Name of the bare-handler limit.
pub(crate) const BARE_HANDLER: &str = "bare-handler";
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

/// Documents the find limit reads from, by id in turn.
const FIND_DOCUMENTS: usize = 1000;

/// A throwaway name for this process's database and stream.
fn throwaway() -> String {
    format!("bench_limits_{}", std::process::id())
}

fn short(error: impl std::fmt::Display) -> String {
    error.to_string().chars().take(80).collect()
}

/// A document shaped like a stored ticket.
fn ticket_document(n: u64) -> Document {
    doc! {
        "title": "bench limit",
        "price": 10.0,
        "userId": "65f0c0ffee0000000000beef",
        "version": 0_i64,
        "n": n as i64,
    }
}

struct InsertWorker {
    collection: mongodb::Collection<Document>,
    n: u64,
}

impl InsertWorker {
    async fn insert(&mut self) -> Result<(), String> {
        self.n += 1;
        self.collection
            .insert_one(ticket_document(self.n))
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
    let client = connect_mongo(url).await?;
    let database = client.database(&throwaway());
    let result = async {
        let collection = database.collection::<Document>("tickets");
        collection
            .insert_one(ticket_document(0))
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
                let mut d = ticket_document(n);
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
    drop_throwaway(&database).await?;
    result
}

/// Drops a throwaway database and shuts its client down.
async fn drop_throwaway(database: &mongodb::Database) -> anyhow::Result<()> {
    let dropped = database.drop().await;
    crate::client::shut_down(database.client()).await;
    dropped.context("drop the throwaway database")
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
    url: &str,
    clients: usize,
    timing: Timing,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let (context, name) = throwaway_stream(url).await?;
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
    nats_url: &str,
    clients: usize,
    timing: Timing,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let client = connect_mongo(mongo_url).await?;
    let database = client.database(&format!("{}_publish", throwaway()));
    let (context, name) = throwaway_stream(nats_url).await?;
    let payload = event_payload();
    let collection = database.collection::<Document>("tickets");
    let workers = (0..clients)
        .map(|i| InsertPublishWorker {
            insert: InsertWorker {
                collection: collection.clone(),
                n: (i as u64) << 40,
            },
            publish: PublishWorker {
                jetstream: context.clone(),
                subject: format!("{name}.events.ticket.created"),
                prefix: format!("{i}"),
                n: 0,
                payload: payload.clone(),
            },
        })
        .collect();
    let measured = closed_loop(workers, timing, bar).await;
    remove(&database, &context, &name).await?;
    Ok(measured)
}

/// Removes a throwaway database and stream, both even when one fails.
async fn remove(
    database: &mongodb::Database,
    context: &jetstream::Context,
    stream: &str,
) -> anyhow::Result<()> {
    let deleted = context.delete_stream(stream).await;
    drop_throwaway(database).await?;
    deleted.with_context(|| format!("delete stream {stream}"))?;
    Ok(())
}

/// A client with the services' own pool size ([`common::mongo::POOL_SIZE`], unless the URL
/// sets `maxPoolSize`, as for the services), so that the limit is not the driver's default
/// pool of 10.
async fn connect_mongo(url: &str) -> anyhow::Result<mongodb::Client> {
    let mut options = mongodb::options::ClientOptions::parse(url)
        .await
        .context("parse MONGO_URL")?;
    options
        .max_pool_size
        .get_or_insert(common::mongo::POOL_SIZE);
    mongodb::Client::with_options(options).context("connect to MONGO_URL")
}

/// A throwaway stream configured like the event stream (file storage, a duplicate window,
/// message ids) on the NATS at `url`, and its name.
async fn throwaway_stream(url: &str) -> anyhow::Result<(jetstream::Context, String)> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connect to nats at {url}"))?;
    let context = jetstream::new(client);
    let name = throwaway();
    context
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            storage: stream::StorageType::File,
            duplicate_window: common::events::bus::DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .with_context(|| format!("create stream {name}"))?;
    Ok((context, name))
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

/// `argon2-verify`: auth's password check (argon2id, 19 MiB, t=2, p=1) through auth's own
/// hasher (blocking threads, two per core at once, pooled memory) — the ceiling of sign-in.
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

/// Auth's currentuser handler, without the stack's layers (request id, tracing, security
/// headers, CORS, body limit): the cookie read, the JWT verified, the JSON written.
async fn current_user(MaybeCurrentUser(claims): MaybeCurrentUser) -> Json<serde_json::Value> {
    let current = claims.map(|c| json!({"id": c.id, "email": c.email, "iat": c.iat}));
    Json(json!({ "currentUser": current }))
}

/// `bare-handler`: that handler served in this process on a free loopback port, loaded like
/// the currentuser scenario, with a cookie signed by a key of its own.
pub(crate) async fn bare_handler(
    clients: usize,
    timing: Timing,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let sessions = Sessions::new(&SessionConfig {
        jwt_key: format!("bench-{}", ObjectId::new().to_hex()),
        ttl: Duration::from_secs(3600),
        cookie_secure: false,
    });
    let (token, _) = sessions.issue(&ObjectId::new().to_hex(), "bench@test.dev")?;
    let cookie = HeaderValue::from_str(&format!("session={token}"))?;
    let router = Router::new()
        .route("/api/users/currentuser", get(current_user))
        .with_state(sessions);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("bind the bare handler")?;
    let target = Target::local(listener.local_addr()?)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let workers = (0..clients)
        .map(|_| HttpWorker::new(Conn::new(target.clone()), Plan::CurrentUser(cookie.clone())))
        .collect();
    let measured = closed_loop(workers, timing, bar).await;
    let _ = stop.send(());
    // Workers' connections are dropped with them, so graceful shutdown ends promptly.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(measured)
}

/// Name of the replication floor: the least a replicated write's lag can be on these servers.
pub(crate) const REPLICATION_FLOOR: &str = "replication-floor";

/// At most this many events are written to the floor's replica at once, as the listener's
/// lanes do.
const FLOOR_LANES: usize = 32;

/// `replication-floor`, open loop at `rate` writes a second for `duration`, in a throwaway
/// database and stream: each write is a ticket-sized `insert_one` and, once it is stored, the
/// publish of its event (ack awaited); a pull consumer stores each event in a replica
/// collection and acks it; the lag runs from the first insert's return until the replica's
/// change stream shows the second. The same durable writes, publish, consume and change stream
/// as the lag scenario, without HTTP, sessions, the outbox's removal or the version
/// check: what the servers alone cost at that rate on this machine.
pub(crate) async fn replication_floor(
    mongo_url: &str,
    nats_url: &str,
    rate: u32,
    duration: Duration,
    sent: &ProgressBar,
) -> anyhow::Result<crate::lag::LagReport> {
    let client = connect_mongo(mongo_url).await?;
    let database = client.database(&format!("{}_floor", throwaway()));
    let (context, name) = throwaway_stream(nats_url).await?;
    let result = floor(&database, &context, &name, rate, duration, sent).await;
    remove(&database, &context, &name).await?;
    result
}

async fn floor(
    database: &mongodb::Database,
    context: &jetstream::Context,
    stream: &str,
    rate: u32,
    duration: Duration,
    sent: &ProgressBar,
) -> anyhow::Result<crate::lag::LagReport> {
    use futures::StreamExt as _;
    use jetstream::consumer::{AckPolicy, pull};

    let source = database.collection::<Document>("source");
    let replica = database.collection::<Document>("replica");
    let mut changes = replica.watch().await.context("watch the floor's replica")?;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(change)) = changes.next().await {
            let at = Instant::now();
            let key = change
                .document_key
                .as_ref()
                .and_then(|k| k.get_i64("_id").ok());
            if let Some(n) = key
                && seen_tx.send((n, at)).is_err()
            {
                break;
            }
        }
    });

    let consumer = context
        .get_stream(stream)
        .await
        .with_context(|| format!("get stream {stream}"))?
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("create the floor's consumer")?;
    let mut messages = consumer
        .messages()
        .await
        .context("pull the floor's events")?;
    let applier = tokio::spawn({
        let replica = replica.clone();
        async move {
            // Aborting the applier drops this set, which aborts the applies in it.
            let mut lanes = tokio::task::JoinSet::new();
            while let Some(Ok(message)) = messages.next().await {
                while lanes.try_join_next().is_some() {}
                if lanes.len() >= FLOOR_LANES {
                    lanes.join_next().await;
                }
                let replica = replica.clone();
                lanes.spawn(async move {
                    let n = std::str::from_utf8(&message.payload)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok());
                    if let Some(n) = n
                        && replica.insert_one(doc! { "_id": n }).await.is_ok()
                    {
                        let _ = message.ack().await;
                    }
                });
            }
        }
    });

    let (total, mut ticker) = crate::lag::open_loop(rate, duration);
    let subject = format!("{stream}.events.ticket.updated");
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        sent.inc(1);
        let (source, context, subject) = (source.clone(), context.clone(), subject.clone());
        writes.spawn(async move {
            source.insert_one(ticket_document(n as u64)).await.ok()?;
            let written = Instant::now();
            let ack = context.publish(subject, n.to_string().into()).await.ok()?;
            ack.await.ok()?;
            Some((n as i64, written))
        });
    }
    let mut written = std::collections::HashMap::with_capacity(total);
    while let Some(joined) = writes.join_next().await {
        if let Ok(Some((n, at))) = joined {
            written.insert(n, at);
        }
    }
    let mut report = crate::lag::LagReport {
        writes: total,
        failed_writes: total - written.len(),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while report.lags.len() < written.len() {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some((n, at))) => {
                if let Some(start) = written.get(&n) {
                    report.lags.push(at.saturating_duration_since(*start));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    applier.abort();
    watcher.abort();
    let _ = applier.await;
    let _ = watcher.await;
    report.failures = total - report.lags.len();
    report.lags.sort_unstable();
    Ok(report)
}
