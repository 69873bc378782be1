//! Durable listeners: one JetStream pull consumer per (service, event), shared by every
//! replica of the service, with explicit acks, delayed retries and dead letters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::bus::EventBus;
use super::catalog::Event;
use super::dlq;
use crate::metrics::ConsumerCounters;
use crate::server::BackgroundTask;

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
    /// larger writes (orders' ticket replica at 3,000 events/s: 32 lanes wrote 3 events per
    /// command on average, 2 lanes 33).
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
            counters: bus.metrics().consumer(&consumer),
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
    pub async fn ensure_consumer(
        &self,
    ) -> anyhow::Result<async_nats::jetstream::consumer::PullConsumer> {
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
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .messages()
            .await
            .context("start pulling")?;
        tracing::info!(consumer = %self.consumer, subjects = ?E::subjects(), "listening");
        let this = Arc::new(self);
        // One lane per slice of records: a record's events are applied one after the other,
        // in stream order, and different records' events side by side.
        let count = H::LANES.max(1);
        let mut lanes = Vec::with_capacity(count);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (sender, mut queue) = tokio::sync::mpsc::channel::<Parsed<E>>(LANE_DEPTH);
            let this = Arc::clone(&this);
            workers.spawn(async move {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while let Some(first) = queue.recv().await {
                    // Whatever else already waits in the lane goes along: under a backlog a
                    // handler that can apply events at once saves a round trip per event.
                    batch.push(first);
                    fill(&mut queue, &mut batch, in_backlog).await;
                    if batch.len() > 1 && this.all_at_once(&batch).await {
                        batch.clear();
                        continue;
                    }
                    for (message, event) in batch.drain(..) {
                        this.process(message, event).await;
                    }
                }
            });
            lanes.push(sender);
        }
        let hasher = std::hash::RandomState::new();
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
                    let lane = std::hash::BuildHasher::hash_one(&hasher, event.record_id())
                        as usize
                        % count;
                    if lanes[lane].send((message, event)).await.is_err() {
                        break Err(anyhow::anyhow!("consumer {} lane stopped", this.consumer));
                    }
                }
                Some(Err(error)) => {
                    // Missed heartbeats and reconnects surface here; the stream resumes.
                    tracing::warn!(consumer = %this.consumer, error = %error, "pull error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => break Err(anyhow::anyhow!("consumer {} stream ended", this.consumer)),
            }
        };
        // The messages already handed to a lane are finished (acked or retried), not dropped.
        drop(lanes);
        while workers.join_next().await.is_some() {}
        result
    }

    /// Offers a lane's waiting messages to [`Handler::handle_all`]; acknowledges them all when
    /// it applied them all.
    async fn all_at_once(&self, batch: &[Parsed<E>]) -> bool {
        let events: Vec<&E> = batch.iter().map(|(_, event)| event).collect();
        let span = tracing::info_span!("batch", consumer = %self.consumer, size = batch.len());
        let done = match self.handler.handle_all(&events).instrument(span).await {
            Ok(done) => done,
            Err(error) => {
                tracing::warn!(consumer = %self.consumer, error = %format!("{error:#}"), "batch apply failed; one by one");
                false
            }
        };
        if done {
            for (message, _) in batch {
                self.counters.consumed();
                self.counters.acked();
                ack(message, AckKind::Ack).await;
            }
        }
        done
    }

    /// Decodes a message; one that cannot be decoded is dead-lettered at once.
    async fn parse(&self, message: &async_nats::jetstream::Message) -> Option<E> {
        match serde_json::from_slice(&message.payload) {
            Ok(event) => Some(event),
            Err(error) => {
                self.counters.consumed();
                let span = self.span(message);
                self.dead_letter(message, &format!("unparseable payload: {error}"))
                    .instrument(span)
                    .await;
                None
            }
        }
    }

    /// The span of one message: the consumer, the stream position, and the publisher's trace.
    fn span(&self, message: &async_nats::jetstream::Message) -> tracing::Span {
        let (stream_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(_) => (0, 1),
        };
        let span = tracing::info_span!(
            "message",
            consumer = %self.consumer,
            subject = %message.subject,
            seq = stream_sequence,
            delivered,
            trace_id = tracing::field::Empty,
        );
        // The handler's own events (through the outbox) continue the publisher's trace.
        crate::telemetry::continue_trace(
            &span,
            &crate::telemetry::NatsHeaders(message.headers.as_ref()),
        );
        span
    }

    async fn process(&self, message: async_nats::jetstream::Message, event: E) {
        self.counters.consumed();
        let (stream_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(_) => (0, 1),
        };
        let delivery = Delivery {
            consumer: self.consumer.clone(),
            stream_sequence,
            delivered,
        };
        let span = self.span(&message);
        async {
            let event_id = event.event_id();
            let version = event.version();
            tracing::info!(%event_id, ?version, "received");
            let outcome = self.handler.handle(event, &delivery).await;
            let (reason, outage) = match outcome {
                Ok(Outcome::Ack) => {
                    self.counters.acked();
                    ack(&message, AckKind::Ack).await;
                    return;
                }
                Ok(Outcome::Retry(reason)) => (reason, false),
                Err(error) => (format!("{error:#}"), crate::mongo::is_outage(&error)),
            };
            // A database outage is not the message's fault: however long it lasts, the
            // message waits for the database instead of going to the dead letters.
            if delivered >= MAX_DELIVERIES && !outage {
                self.dead_letter(
                    &message,
                    &format!("failed {delivered} deliveries: {reason}"),
                )
                .await;
            } else {
                let delay = retry_delay(delivered);
                tracing::info!(%reason, retry_in_ms = delay.as_millis() as u64, "will retry");
                self.counters.retried();
                ack(&message, AckKind::Nak(Some(delay))).await;
            }
        }
        .instrument(span)
        .await;
    }

    /// Copies the message to the dead-letter stream with the reason, then terminates it so it
    /// never blocks the consumer again. If the copy fails, the message is left for redelivery:
    /// nothing is dropped.
    ///
    /// The copy keeps the message's headers, its `Nats-Msg-Id` renamed to `Dlq-Msg-Id` so that
    /// the dead-letter stream does not drop a second consumer's copy of the same event as a
    /// duplicate; [`dlq::DeadLetters::replay`] puts them back.
    async fn dead_letter(&self, message: &async_nats::jetstream::Message, reason: &str) {
        let mut headers = HeaderMap::new();
        for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
            let name: &str = name.as_ref();
            if name.starts_with("Dlq-") {
                continue;
            }
            let name = if name.eq_ignore_ascii_case(dlq::NATS_MSG_ID) {
                dlq::MSG_ID_HEADER
            } else {
                name
            };
            for value in values {
                headers.append(name, value.clone());
            }
        }
        headers.insert(
            dlq::REASON_HEADER,
            reason.replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert(dlq::SUBJECT_HEADER, message.subject.as_str());
        headers.insert(dlq::CONSUMER_HEADER, self.consumer.as_str());
        if let Ok(info) = message.info() {
            headers.insert(
                dlq::STREAM_SEQUENCE_HEADER,
                info.stream_sequence.to_string().as_str(),
            );
        }
        let subject = self.bus.dead_letter_subject(&self.consumer);
        match self
            .bus
            .publish_bytes(subject, headers, message.payload.clone())
            .await
        {
            Ok(()) => {
                tracing::error!(%reason, "dead-lettered");
                self.counters.dead_lettered();
                ack(message, AckKind::Term).await;
            }
            Err(error) => {
                tracing::error!(error = ?error, %reason, "could not dead-letter; will retry");
                self.counters.retried();
                ack(message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }
}

/// Grows with each delivery: quick for the usual reordering, patient for a slow predecessor.
fn retry_delay(delivered: i64) -> Duration {
    let step = u64::try_from(delivered.max(1)).unwrap_or(1);
    Duration::from_millis((20 * step * step).min(3_000))
}

/// Adds what already waits in the lane to `batch`. Under a backlog (the server still holds
/// [`BACKLOG`] or more messages for the consumer) it also waits for more, briefly: the sooner a
/// lane writes, the fewer versions of one record its batch holds, and every version that does
/// not coalesce is one more MongoDB write. Writing 2 events per statement is what held
/// catch-up to about 13,000 events/s.
async fn fill<T>(
    queue: &mut tokio::sync::mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    in_backlog: impl Fn(&T) -> bool,
) {
    let until = tokio::time::Instant::now() + FILL_MAX;
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) if batch.last().is_some_and(&in_backlog) => {
                let gap = (tokio::time::Instant::now() + FILL_GAP).min(until);
                match tokio::time::timeout_at(gap, queue.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            Err(_) => break,
        }
    }
}

/// Whether the server still held a backlog for the consumer when it delivered `message`.
fn in_backlog<E>((message, _): &Parsed<E>) -> bool {
    message.info().is_ok_and(|info| info.pending >= BACKLOG)
}

async fn ack(message: &async_nats::jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // The server redelivers after ACK_WAIT; the handlers are idempotent.
        tracing::warn!(error = %error, "ack failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(20));
        assert!(retry_delay(5) > retry_delay(2));
        assert_eq!(retry_delay(1000), Duration::from_secs(3));
    }

    /// `(item, the server held a backlog when it was delivered)`.
    type Item = (u32, bool);

    fn lane() -> (mpsc::Sender<Item>, mpsc::Receiver<Item>) {
        mpsc::channel(MAX_BATCH * 2)
    }

    /// The next batch as a lane takes it, and how long filling it took.
    async fn next_batch(queue: &mut mpsc::Receiver<Item>) -> (Vec<Item>, Duration) {
        let mut batch = vec![queue.recv().await.unwrap()];
        let started = tokio::time::Instant::now();
        fill(queue, &mut batch, |(_, backlog)| *backlog).await;
        (batch, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn live_traffic_is_written_at_once_with_whatever_already_waits() {
        let (sender, mut queue) = lane();
        sender.send((1, false)).await.unwrap();
        sender.send((2, false)).await.unwrap();
        let later = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            later.send((3, false)).await.unwrap();
        });
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!(batch, [(1, false), (2, false)]);
        assert_eq!(took, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_backlog_a_batch_waits_for_more_until_a_gap_or_the_limit() {
        // Messages keep coming every 7 ms (less than the gap): the batch grows until the
        // overall limit.
        let (sender, mut queue) = lane();
        let steady = sender.clone();
        tokio::spawn(async move {
            for n in 0.. {
                if steady.send((n, true)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
        });
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!(took, FILL_MAX);
        assert_eq!(batch.len(), 36, "the first, then one every 7 ms for 250 ms");
        drop(queue);

        // A pause longer than the gap ends the batch.
        let (sender, mut queue) = lane();
        sender.send((1, true)).await.unwrap();
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!((batch.len(), took), (1, FILL_GAP));

        // The end of the backlog (the last message says so) ends it at once.
        sender.send((2, true)).await.unwrap();
        sender.send((3, false)).await.unwrap();
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!(batch, [(2, true), (3, false)]);
        assert_eq!(took, Duration::ZERO);

        // A full batch is written without waiting.
        for n in 0..MAX_BATCH as u32 + 5 {
            sender.send((n, true)).await.unwrap();
        }
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!((batch.len(), took), (MAX_BATCH, Duration::ZERO));
    }
}
