//! `ticketing catchup`: how fast the orders service's replica of tickets catches up on a
//! backlog. The events are published first, into a namespace of their own, while no orders
//! consumer runs; then the orders service's listeners start and the clock runs until every
//! ticket in the replica has its last version.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use common::config::Env;
use common::events::{Event as _, EventBus, NatsConfig, TicketCreated, TicketData, TicketUpdated};
use mongodb::bson::doc;
use tokio_util::sync::CancellationToken;

/// Arguments of `ticketing catchup`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The MongoDB the orders service writes its replica to.
    #[arg(long, env = "MONGO_URL")]
    pub mongo_url: String,
    /// The NATS server with JetStream.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: String,
    /// Events in the backlog.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Tickets they are spread over (each gets a creation and then updates).
    #[arg(long, default_value_t = 2_000)]
    pub tickets: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// What a catch-up took.
#[derive(Debug)]
pub struct Report {
    /// Events published into the backlog.
    pub events: usize,
    /// Time from the listeners' start until the replica held every last version.
    pub elapsed: Duration,
    /// Messages the consumers delivered (each counted once), as JetStream reports them.
    pub delivered: u64,
    /// Tickets whose replica holds their last version at the end.
    pub caught_up: u64,
    /// Messages the consumer delivered more than once.
    pub redelivered: u64,
    /// Messages dead-lettered.
    pub dead_letters: u64,
}

impl Report {
    /// Events applied per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backlog:  {} events\ncaught up in {:.2} s: {:.0} events/s\ndelivered: {} ({} tickets at their last version), redelivered: {}, dead letters: {}",
            self.events,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.delivered,
            self.caught_up,
            self.redelivered,
            self.dead_letters
        )
    }
}

/// Publishes the backlog, starts the orders service's background tasks, and times the
/// catch-up. The namespace and database are removed afterwards.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.tickets > 0 && args.events >= args.tickets,
        "need at least one event per ticket"
    );
    let namespace = format!(
        "catchup{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let database = format!("{namespace}_orders");
    let nats = NatsConfig::new(&args.nats_url, &namespace);
    let bus = EventBus::connect(&nats, "catchup").await?;
    let last_version = publish_backlog(&bus, args.events, args.tickets).await?;

    let env = Env::from_pairs([
        ("MONGO_URL", args.mongo_url.clone()),
        ("MONGO_DB", database.clone()),
        ("NATS_URL", args.nats_url.clone()),
        ("EVENT_NAMESPACE", namespace.clone()),
        ("JWT_KEY", common::session::DEVELOPMENT_KEYS[0].to_owned()),
        ("COOKIE_SECURE", "false".to_owned()),
        ("PORT", "0".to_owned()),
    ]);
    let config = <orders::Config as common::config::FromEnv>::from_env(&env)?;
    let service = common::server::Launch::build(&config).await?;
    let replica = mongodb::Client::with_uri_str(&args.mongo_url)
        .await?
        .database(&database);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (_, task) in service.tasks {
        tasks.spawn(task(shutdown.clone()));
    }
    let deadline = started + Duration::from_secs(args.timeout);
    let tickets = u64::try_from(args.tickets)?;
    let mut done;
    let caught_up = loop {
        done = replica
            .collection::<mongodb::bson::Document>("tickets")
            .count_documents(doc! { "version": last_version })
            .await?;
        if done >= tickets {
            break Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "only {done} of {tickets} tickets caught up within {} s",
                args.timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}

    let stream = bus.jetstream().get_stream(bus.stream_name()).await?;
    let mut redelivered = 0;
    let mut delivered = 0;
    let mut names = stream.consumer_names();
    while let Some(name) = futures::StreamExt::next(&mut names).await {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(&name?)
            .await
            .map_err(|e| anyhow::anyhow!("consumer: {e}"))?;
        let info = consumer.info().await?;
        redelivered += info.num_redelivered as u64;
        delivered += info.delivered.consumer_sequence;
    }
    // The bus made the dead-letter stream: one that cannot be read is an error, not "none".
    let dead_letters = bus
        .jetstream()
        .get_stream(bus.dead_letter_stream_name())
        .await
        .map_err(|e| anyhow::anyhow!("dead-letter stream: {e}"))?
        .info()
        .await?
        .state
        .messages;
    // Leave nothing behind.
    let _ = replica.drop().await;
    crate::client::shut_down(replica.client()).await;
    let _ = bus.jetstream().delete_stream(bus.stream_name()).await;
    let _ = bus
        .jetstream()
        .delete_stream(bus.dead_letter_stream_name())
        .await;
    Ok(Report {
        events: args.events,
        elapsed: caught_up?,
        delivered,
        caught_up: done,
        redelivered,
        dead_letters,
    })
}

/// Publishes `events` ticket events over `tickets` tickets (a creation, then updates), in
/// order, awaiting the acks per chunk; returns the last version every ticket reaches.
async fn publish_backlog(bus: &EventBus, events: usize, tickets: usize) -> anyhow::Result<i64> {
    let versions = events / tickets;
    let last_version = i64::try_from(versions)? - 1;
    let ids: Vec<String> = (0..tickets)
        .map(|_| mongodb::bson::oid::ObjectId::new().to_hex())
        .collect();
    let mut acks = Vec::with_capacity(1_000);
    for version in 0..=last_version {
        for id in &ids {
            let data = TicketData {
                id: id.clone(),
                version,
                title: format!("backlog {version}"),
                price: 10.0 + version as f64,
                user_id: "catchup".to_owned(),
                order_id: None,
            };
            let (subject, event_id, payload) = if version == 0 {
                let event = TicketCreated(data);
                (
                    TicketCreated::SUBJECT,
                    event.event_id(),
                    serde_json::to_vec(&event)?,
                )
            } else {
                let event = TicketUpdated(data);
                (
                    TicketUpdated::SUBJECT,
                    event.event_id(),
                    serde_json::to_vec(&event)?,
                )
            };
            acks.push(
                bus.publish_raw(subject, &event_id, None, Bytes::from(payload))
                    .await?,
            );
            if acks.len() == 1_000 {
                for ack in acks.drain(..) {
                    ack.await.context("backlog publish")?;
                }
            }
        }
    }
    for ack in acks {
        ack.await.context("backlog publish")?;
    }
    Ok(last_version)
}
