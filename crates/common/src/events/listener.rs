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
    /// Applies the event. `Err` is retried with backoff like `Retry`, and dead-lettered after
    /// [`MAX_DELIVERIES`].
    fn handle(
        &self,
        event: E,
        delivery: &Delivery,
    ) -> impl Future<Output = anyhow::Result<Outcome>> + Send;
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
        let consumer = format!("{service}-{}", E::SUBJECT.token().replace('.', "-"));
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

    /// Creates (or binds to) the durable consumer. Idempotent; every replica calls it.
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
            .get_or_create_consumer(
                &self.consumer,
                pull::Config {
                    durable_name: Some(self.consumer.clone()),
                    filter_subject: self.bus.subject(E::SUBJECT),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    // Unlimited on the server: the listener itself dead-letters after
                    // MAX_DELIVERIES, with the reason, instead of the server dropping silently.
                    max_deliver: -1,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
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
        let mut messages = consumer.messages().await.context("start pulling")?;
        tracing::info!(consumer = %self.consumer, subject = %E::SUBJECT, "listening");
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => self.process(message).await,
                Some(Err(error)) => {
                    // Missed heartbeats and reconnects surface here; the stream resumes.
                    tracing::warn!(consumer = %self.consumer, error = %error, "pull error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => anyhow::bail!("consumer {} stream ended", self.consumer),
            }
        }
    }

    async fn process(&self, message: async_nats::jetstream::Message) {
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
        let span = tracing::info_span!(
            "message",
            consumer = %self.consumer,
            subject = %E::SUBJECT,
            seq = stream_sequence,
            delivered,
        );
        async {
            let event: E = match serde_json::from_slice(&message.payload) {
                Ok(event) => event,
                Err(error) => {
                    self.dead_letter(&message, &format!("unparseable payload: {error}"))
                        .await;
                    return;
                }
            };
            let event_id = event.event_id();
            let version = event.version();
            tracing::info!(%event_id, ?version, "received");
            let outcome = self.handler.handle(event, &delivery).await;
            let reason = match outcome {
                Ok(Outcome::Ack) => {
                    self.counters.acked();
                    ack(&message, AckKind::Ack).await;
                    return;
                }
                Ok(Outcome::Retry(reason)) => reason,
                Err(error) => format!("{error:#}"),
            };
            if delivered >= MAX_DELIVERIES {
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

async fn ack(message: &async_nats::jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // The server redelivers after ACK_WAIT; the handlers are idempotent.
        tracing::warn!(error = %error, "ack failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(20));
        assert!(retry_delay(5) > retry_delay(2));
        assert_eq!(retry_delay(1000), Duration::from_secs(3));
    }
}
