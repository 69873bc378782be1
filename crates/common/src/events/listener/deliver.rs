//! What a lane does with a message: hands it to the handler inside the message's span, and
//! acknowledges, retries with a growing delay, or dead-letters it by the outcome.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use tracing::Instrument as _;

use super::{Delivery, Handler, Listener, MAX_DELIVERIES, Outcome, Parsed};
use crate::events::catalog::Event;

impl<E: Event, H: Handler<E>> Listener<E, H> {
    /// Offers a lane's waiting messages to [`Handler::handle_all`]; acknowledges them all when
    /// it applied them all.
    pub(super) async fn all_at_once(&self, batch: &[Parsed<E>]) -> bool {
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
    pub(super) async fn parse(&self, message: &async_nats::jetstream::Message) -> Option<E> {
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

    pub(super) async fn process(&self, message: async_nats::jetstream::Message, event: E) {
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
}

/// Grows with each delivery: quick for the usual reordering, patient for a slow predecessor.
fn retry_delay(delivered: i64) -> Duration {
    let step = u64::try_from(delivered.max(1)).unwrap_or(1);
    Duration::from_millis((20 * step * step).min(3_000))
}

pub(super) async fn ack(message: &async_nats::jetstream::Message, kind: AckKind) {
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
