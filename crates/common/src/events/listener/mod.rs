//! Durable listeners: one JetStream pull consumer per (service, event), shared by every
//! replica of the service, with explicit acks, delayed retries and dead letters.
//!
//! A listener pulls, decodes and routes each message to a lane by record id (`lanes.rs`); a
//! lane handles its messages in stream order and acks, retries or dead-letters each
//! (`deliver.rs`, `dead_letter.rs`).

mod dead_letter;
mod deliver;
mod lanes;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::bus::EventBus;
use super::catalog::Event;
use super::counters::ConsumerCounters;
use crate::task::BackgroundTask;
use lanes::Lanes;

/// After this many deliveries a message that still fails goes to the dead-letter stream.
pub const MAX_DELIVERIES: i64 = 30;
/// How long the server waits for an ack before redelivering (a crashed consumer's messages
/// come back after this).
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// Records handled side by side by one listener, unless its handler says otherwise
/// ([`Handler::LANES`]): their events are spread over this many lanes by record id.
pub const LANES: usize = 32;
/// Messages waiting in one lane; a full lane holds up the pull, which bounds what is in hand.
const LANE_DEPTH: usize = 1_024;
/// Most events of one lane offered to [`Handler::handle_all`] at once.
const MAX_BATCH: usize = 1_024;
/// Delivered and not yet acknowledged, per consumer whatever its lanes: a full batch for
/// each of [`LANES`] lanes, so a backlog of that size is in hand at once and its versions of
/// one record coalesce.
pub const MAX_ACK_PENDING: i64 = (LANES * MAX_BATCH) as i64;
/// A lane waits for its batch to fill only while the server still holds at least this many
/// messages for the consumer: a backlog. Live traffic never waits.
const BACKLOG: u64 = 1_000;
/// How long a lane waits for the next message of a backlog before writing what it has, and
/// the longest it waits for one batch in all (far below [`ACK_WAIT`]).
const FILL_GAP: Duration = Duration::from_millis(20);
const FILL_MAX: Duration = Duration::from_millis(250);
/// Messages asked for per pull request.
const PULL_BATCH: usize = 1_000;
/// The server says it is still there this often while it has nothing to deliver; two missed
/// mean the pull request was lost (its server died) and a new one is made.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a pull request waits on the server before the client renews it.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

type Parsed<E> = (async_nats::jetstream::Message, E);

/// What to do with a message once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (applied, or a duplicate that changes nothing): acknowledge.
    Ack,
    /// Not applicable yet (e.g. a version from the future): redeliver after a delay.
    Retry(String),
}

/// Where a message came from, for handlers that log or inspect it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The durable consumer's name.
    pub consumer: String,
    /// Position in the stream.
    pub stream_sequence: u64,
    /// 1 on first delivery.
    pub delivered: i64,
}

/// Handles one event type for one service.
pub trait Handler<E: Event>: Send + Sync + 'static {
    /// The lanes this handler's events are spread over by record id; each lane applies its
    /// events in stream order, the lanes side by side. One-at-a-time handlers want many. A
    /// handler that applies batches ([`Handler::handle_all`]) wants few: a lane's next batch
    /// is whatever arrived while its previous write was out, so fewer lanes make fewer,
    /// larger writes.
    const LANES: usize = LANES;

    /// Applies the event. `Err` is retried with backoff like `Retry`, and dead-lettered after
    /// [`MAX_DELIVERIES`].
    fn handle(
        &self,
        event: E,
        delivery: &Delivery,
    ) -> impl Future<Output = anyhow::Result<Outcome>> + Send;

    /// Applies several events of one lane at once, in order, when the handler can do it in
    /// one round trip (a replica's bulk update). `Ok(true)` means every event is done and is
    /// acknowledged; `Ok(false)` or `Err` means "not all": each event then goes through
    /// [`Handler::handle`], which must find the ones already applied to be duplicates. The
    /// default applies nothing at once.
    fn handle_all(&self, events: &[&E]) -> impl Future<Output = anyhow::Result<bool>> + Send {
        let _ = events;
        async { Ok(false) }
    }
}

/// A listener for `E`: builds the background task that consumes it.
pub struct Listener<E, H> {
    bus: EventBus,
    consumer: String,
    handler: Arc<H>,
    counters: Arc<ConsumerCounters>,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E: Event, H: Handler<E>> Listener<E, H> {
    /// The listener of `service` for `E`; its durable consumer is `<service>-<subject>`.
    pub fn new(bus: EventBus, service: &str, handler: H) -> Self {
        let consumer = format!(
            "{service}-{}",
            E::subjects()
                .iter()
                .map(|s| s.token().replace('.', "-"))
                .collect::<Vec<_>>()
                .join("-and-")
        );
        Self {
            counters: bus.counters().consumer(&consumer),
            consumer,
            bus,
            handler: Arc::new(handler),
            _event: std::marker::PhantomData,
        }
    }

    /// The durable consumer's name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The bus it consumes from.
    pub(crate) fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Creates the durable consumer, or brings an existing one to these settings (a consumer
    /// left by an older version keeps working with the current limits). Idempotent; every
    /// replica calls it.
    pub async fn ensure_consumer(&self) -> anyhow::Result<PullConsumer> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(self.bus.stream_name())
            .await
            .context("get event stream")?;
        stream
            .create_consumer(pull::Config {
                durable_name: Some(self.consumer.clone()),
                filter_subjects: E::subjects()
                    .into_iter()
                    .map(|s| self.bus.subject(s))
                    .collect(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                // Unlimited on the server: the listener itself dead-letters after
                // MAX_DELIVERIES, with the reason, instead of the server dropping silently.
                max_deliver: -1,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            })
            .await
            .with_context(|| format!("create consumer {}", self.consumer))
    }

    /// The consuming loop as a background task. It stops pulling when the token is
    /// cancelled; the message in hand is acked or left for redelivery, never half-applied.
    pub fn task(self) -> BackgroundTask {
        Box::new(move |shutdown: CancellationToken| Box::pin(self.run(shutdown)))
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let consumer = self.ensure_consumer().await?;
        let mut messages = pull(&consumer).await?;
        tracing::info!(consumer = %self.consumer, subjects = ?E::subjects(), "listening");
        let this = Arc::new(self);
        let lanes = Lanes::spawn(&this);
        let result = loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let Some(event) = this.parse(&message).await else {
                        continue;
                    };
                    if lanes.route(message, event).await.is_err() {
                        break Err(anyhow::anyhow!("consumer {} lane stopped", this.consumer));
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(consumer = %this.consumer, error = %error, "pull error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // A pull request that went down with the consumer's leader (no responders,
                    // no heartbeats) is never answered, and the stream would ask again only
                    // once it expired; a new stream asks the new leader at once. Messages the
                    // old one had in flight come back after `ACK_WAIT`.
                    let lost = matches!(
                        error.kind(),
                        MessagesErrorKind::NoResponders
                            | MessagesErrorKind::MissingHeartbeat
                            | MessagesErrorKind::Pull
                    );
                    if lost {
                        match pull(&consumer).await {
                            Ok(fresh) => messages = fresh,
                            Err(error) => {
                                tracing::warn!(consumer = %this.consumer, error = %format!("{error:#}"), "pull again");
                            }
                        }
                    }
                }
                None => break Err(anyhow::anyhow!("consumer {} stream ended", this.consumer)),
            }
        };
        // The messages already handed to a lane are finished (acked or retried), not dropped.
        lanes.finish().await;
        result
    }
}

/// A stream of the consumer's messages, pulled in batches of `PULL_BATCH`.
async fn pull(consumer: &PullConsumer) -> anyhow::Result<pull::Stream> {
    consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .heartbeat(PULL_HEARTBEAT)
        .expires(PULL_EXPIRES)
        .messages()
        .await
        .context("start pulling")
}
