//! Dead letters: a message that cannot be applied is copied, with why, to the dead-letter
//! stream and terminated, so that it never blocks its consumer again.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;

use super::deliver::ack;
use super::{Handler, Listener};
use crate::events::catalog::Event;
use crate::events::dlq;

impl<E: Event, H: Handler<E>> Listener<E, H> {
    /// Copies the message to the dead-letter stream with the reason, then terminates it so it
    /// never blocks the consumer again. If the copy fails, the message is left for redelivery:
    /// nothing is dropped.
    ///
    /// The copy keeps the message's headers, its `Nats-Msg-Id` renamed to `Dlq-Msg-Id` so that
    /// the dead-letter stream does not drop a second consumer's copy of the same event as a
    /// duplicate; [`dlq::DeadLetters::replay`] puts them back.
    pub(super) async fn dead_letter(&self, message: &async_nats::jetstream::Message, reason: &str) {
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
