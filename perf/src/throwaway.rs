//! Throwaway databases and streams on the stack's own servers, for the measurements that must
//! not touch the stack's data: named after this process, removed afterwards.

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use mongodb::bson::{Document, doc};

/// A throwaway name for this process's database and stream.
fn name() -> String {
    format!("bench_limits_{}", std::process::id())
}

/// A document shaped like a stored ticket.
pub(crate) fn ticket_document(n: u64) -> Document {
    doc! {
        "title": "bench limit",
        "price": 10.0,
        "userId": "65f0c0ffee0000000000beef",
        "version": 0_i64,
        "n": n as i64,
    }
}

/// The database `<name><suffix>` on the MongoDB at `url`.
pub(crate) async fn database(url: &str, suffix: &str) -> anyhow::Result<mongodb::Database> {
    let client = connect_mongo(url).await?;
    Ok(client.database(&format!("{}{suffix}", name())))
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
    // As the services write: acknowledged by a majority of a replica set.
    options
        .write_concern
        .get_or_insert(mongodb::options::WriteConcern::majority());
    mongodb::Client::with_options(options).context("connect to MONGO_URL")
}

/// The stack's NATS as the limits use it: its servers, and how many of them keep each of the
/// stack's streams, so that a throwaway stream is replicated as the event stream is (on a
/// cluster, every publish waits for a majority of its servers).
#[derive(Debug, Clone)]
pub(crate) struct StackNats {
    /// `NATS_URL`: one server, or a cluster's, comma-separated.
    pub(crate) url: String,
    /// The event stream's replicas.
    pub(crate) replicas: usize,
}

impl StackNats {
    /// The NATS at `url`, with the replicas of the event stream of `namespace` (1 if there is
    /// none yet).
    pub(crate) async fn find(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(common::events::bus::servers(url))
            .await
            .with_context(|| format!("connect to nats at {url}"))?;
        let events = format!("{namespace}_events");
        let replicas = match jetstream::new(client).get_stream(&events).await {
            Ok(mut stream) => stream.info().await?.config.num_replicas.max(1),
            Err(_) => 1,
        };
        Ok(Self {
            url: url.to_owned(),
            replicas,
        })
    }
}

/// A throwaway stream configured like the event stream (file storage, a duplicate window,
/// message ids, its replicas) on the stack's NATS, and its name.
pub(crate) async fn stream(nats: &StackNats) -> anyhow::Result<(jetstream::Context, String)> {
    let url = &nats.url;
    let client = async_nats::connect(common::events::bus::servers(url))
        .await
        .with_context(|| format!("connect to nats at {url}"))?;
    let context = jetstream::new(client);
    let name = name();
    context
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            storage: stream::StorageType::File,
            duplicate_window: common::events::bus::DUPLICATE_WINDOW,
            num_replicas: nats.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("create stream {name}"))?;
    Ok((context, name))
}

/// Drops a throwaway database and shuts its client down.
pub(crate) async fn drop_database(database: &mongodb::Database) -> anyhow::Result<()> {
    let dropped = database.drop().await;
    crate::client::shut_down(database.client()).await;
    dropped.context("drop the throwaway database")
}

/// A throwaway database and a throwaway stream, for a measurement that needs both.
pub(crate) struct DatabaseAndStream {
    pub(crate) database: mongodb::Database,
    pub(crate) jetstream: jetstream::Context,
    /// The stream's name, also the prefix of its subjects.
    pub(crate) stream: String,
}

impl DatabaseAndStream {
    /// The database `<name>_<purpose>` on the MongoDB at `mongo_url` and the stream on the
    /// stack's NATS.
    pub(crate) async fn create(
        mongo_url: &str,
        nats: &StackNats,
        purpose: &str,
    ) -> anyhow::Result<Self> {
        let database = database(mongo_url, &format!("_{purpose}")).await?;
        let (jetstream, stream) = stream(nats).await?;
        Ok(Self {
            database,
            jetstream,
            stream,
        })
    }

    /// Removes both, each even when the other fails.
    pub(crate) async fn remove(self) -> anyhow::Result<()> {
        let deleted = self.jetstream.delete_stream(&self.stream).await;
        drop_database(&self.database).await?;
        deleted.with_context(|| format!("delete stream {}", self.stream))?;
        Ok(())
    }
}
