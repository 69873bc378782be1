//! Dead letters you can act on: list the `<ns>_dlq` stream with why each message landed there,
//! and replay one to its original subject once the cause is fixed.
//!
//! A [`Listener`](super::Listener) dead-letters a message by copying it, with its headers, to
//! `<ns>.dlq.<consumer>` and adding the `Dlq-*` headers below. Replaying publishes the payload
//! again on the original subject of the events stream, so every consumer of that subject sees it
//! again (consumers are idempotent), and then deletes it from the dead-letter stream.
//!
//! ```no_run
//! # async fn demo(bus: common::events::EventBus) -> anyhow::Result<()> {
//! use common::events::dlq::DeadLetters;
//! let dlq = DeadLetters::new(bus);
//! for letter in dlq.list().await? {
//!     println!("#{} {:?}: {:?}", letter.id, letter.consumer, letter.reason);
//! }
//! let replayed = dlq.replay(1).await?;
//! println!("back on {} as #{}", replayed.subject, replayed.sequence);
//! # Ok(())
//! # }
//! ```

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use bytes::Bytes;
use time::OffsetDateTime;

use super::bus::EventBus;

/// Header of a dead letter: why the listener gave up on the message.
pub const REASON_HEADER: &str = "Dlq-Reason";
/// Header of a dead letter: the NATS subject the message was originally published on.
pub const SUBJECT_HEADER: &str = "Dlq-Subject";
/// Header of a dead letter: the durable consumer that gave up.
pub const CONSUMER_HEADER: &str = "Dlq-Consumer";
/// Header of a dead letter: the message's sequence in the events stream.
pub const STREAM_SEQUENCE_HEADER: &str = "Dlq-Stream-Sequence";
/// Header of a dead letter: the original `Nats-Msg-Id`. It is renamed because the dead-letter
/// stream deduplicates on `Nats-Msg-Id` too, and two consumers may dead-letter the same event.
pub const MSG_ID_HEADER: &str = "Dlq-Msg-Id";
/// JetStream's deduplication header.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// One message of the dead-letter stream.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: the id that `replay` takes.
    pub id: u64,
    /// The NATS subject it was originally published on (`Dlq-Subject`).
    pub subject: Option<String>,
    /// The durable consumer that dead-lettered it (`Dlq-Consumer`).
    pub consumer: Option<String>,
    /// Why (`Dlq-Reason`), e.g. `unparseable payload: …` or `failed 30 deliveries: …`.
    pub reason: Option<String>,
    /// Its sequence in the events stream (`Dlq-Stream-Sequence`).
    pub original_sequence: Option<u64>,
    /// Its original `Nats-Msg-Id` (`Dlq-Msg-Id`), when it had one.
    pub msg_id: Option<String>,
    /// When it was dead-lettered (stored in the dead-letter stream).
    pub dead_lettered_at: OffsetDateTime,
    /// Every header, the `Dlq-*` ones included.
    pub headers: HeaderMap,
    /// The payload exactly as it was delivered.
    pub payload: Bytes,
}

impl DeadLetter {
    fn from_stream_message(message: StreamMessage) -> Self {
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_owned())
        };
        Self {
            id: message.sequence,
            subject: header(SUBJECT_HEADER),
            consumer: header(CONSUMER_HEADER),
            reason: header(REASON_HEADER),
            original_sequence: header(STREAM_SEQUENCE_HEADER).and_then(|s| s.parse().ok()),
            msg_id: header(MSG_ID_HEADER),
            dead_lettered_at: message.time,
            headers: message.headers,
            payload: message.payload,
        }
    }

    /// The payload as one line of at most `max_chars` characters: invalid UTF-8 replaced,
    /// control characters shown as spaces, and `…` when cut.
    pub fn preview(&self, max_chars: usize) -> String {
        let text = String::from_utf8_lossy(&self.payload);
        let mut chars = text.chars().map(|c| if c.is_control() { ' ' } else { c });
        let mut preview: String = chars.by_ref().take(max_chars).collect();
        if chars.next().is_some() {
            preview.pop();
            preview.push('…');
        }
        preview
    }

    /// When it was dead-lettered, as RFC 3339 in UTC to the second (`2025-01-31T12:00:00Z`).
    pub fn dead_lettered_at_rfc3339(&self) -> String {
        let t = self.dead_lettered_at.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The dead letter's id (now deleted from the dead-letter stream).
    pub id: u64,
    /// The subject it was published on again.
    pub subject: String,
    /// The fresh `Nats-Msg-Id` it was published with.
    pub msg_id: String,
    /// Its new sequence in the events stream.
    pub sequence: u64,
    /// JetStream already had a message with this id in its duplicate window: the dead letter
    /// had been replayed moments ago (say, by a replay whose delete failed), so it was not
    /// published twice.
    pub duplicate: bool,
}

/// Why a dead letter could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// No message with this id in the dead-letter stream (never there, or already replayed).
    #[error("no dead letter #{id} in stream {stream}")]
    NotFound {
        /// The id asked for.
        id: u64,
        /// The dead-letter stream searched.
        stream: String,
    },
    /// The message has no `Dlq-Subject`, or one outside this namespace's events: replaying it
    /// could publish anywhere, so it is left alone.
    #[error("dead letter #{id} has no original subject in {namespace}.events (found {subject:?})")]
    BadSubject {
        /// The dead letter's id.
        id: u64,
        /// The events namespace of this bus.
        namespace: String,
        /// What `Dlq-Subject` says, if anything.
        subject: Option<String>,
    },
    /// NATS failed (connection, stream, publish or delete).
    #[error(transparent)]
    Nats(#[from] anyhow::Error),
}

/// The dead-letter stream of one namespace. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    bus: EventBus,
}

impl DeadLetters {
    /// The dead letters of `bus`'s namespace.
    pub fn new(bus: EventBus) -> Self {
        Self { bus }
    }

    async fn stream(&self) -> anyhow::Result<Stream> {
        let name = self.bus.dead_letter_stream_name();
        self.bus
            .jetstream()
            .get_stream(&name)
            .await
            .with_context(|| format!("get stream {name}"))
    }

    /// Every dead letter, oldest first.
    pub async fn list(&self) -> anyhow::Result<Vec<DeadLetter>> {
        let stream = self.stream().await?;
        let filter = format!("{}.dlq.>", self.bus.namespace());
        let mut letters = Vec::new();
        let mut next = 1;
        // "The first message at or after `next`" skips the holes that replays leave.
        loop {
            let found = stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(filter.clone())
                .send()
                .await;
            match found {
                Ok(message) => {
                    next = message.sequence + 1;
                    letters.push(DeadLetter::from_stream_message(message));
                }
                Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => break,
                Err(error) => {
                    return Err(anyhow::Error::new(error)
                        .context(format!("read dead letters from #{next}")));
                }
            }
        }
        Ok(letters)
    }

    /// The dead letter with this id, if the stream has it.
    pub async fn get(&self, id: u64) -> anyhow::Result<Option<DeadLetter>> {
        let stream = self.stream().await?;
        match stream.get_raw_message(id).await {
            Ok(message) => Ok(Some(DeadLetter::from_stream_message(message))),
            Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(anyhow::Error::new(error).context(format!("get dead letter #{id}"))),
        }
    }

    /// Publishes the dead letter again on its original subject, with its headers minus the
    /// `Dlq-*` ones and a fresh `Nats-Msg-Id`, waits for JetStream's acknowledgement, then
    /// deletes it from the dead-letter stream.
    ///
    /// The fresh id is the same for every replay of one dead letter, so a replay retried
    /// within the duplicate window (the delete failed, say) publishes nothing twice.
    pub async fn replay(&self, id: u64) -> Result<Replayed, DlqError> {
        let letter = self.get(id).await?.ok_or_else(|| DlqError::NotFound {
            id,
            stream: self.bus.dead_letter_stream_name(),
        })?;
        let events_prefix = format!("{}.events.", self.bus.namespace());
        let subject = match &letter.subject {
            Some(subject) if subject.starts_with(&events_prefix) => subject.clone(),
            other => {
                return Err(DlqError::BadSubject {
                    id,
                    namespace: self.bus.namespace().to_owned(),
                    subject: other.clone(),
                });
            }
        };
        let msg_id = self.replay_msg_id(&letter);
        let mut headers = HeaderMap::new();
        for (name, values) in letter.headers.iter() {
            let name: &str = name.as_ref();
            if name.starts_with("Dlq-") || name.eq_ignore_ascii_case(NATS_MSG_ID) {
                continue;
            }
            for value in values {
                headers.append(name, value.clone());
            }
        }
        headers.insert(NATS_MSG_ID, msg_id.as_str());
        let ack = self
            .bus
            .jetstream()
            .publish_with_headers(subject.clone(), headers, letter.payload.clone())
            .await
            .with_context(|| format!("republish dead letter #{id} to {subject}"))?
            .await
            .with_context(|| format!("await acknowledgement of dead letter #{id}"))?;
        self.stream()
            .await?
            .delete_message(id)
            .await
            .with_context(|| {
                format!(
                    "delete dead letter #{id} (it was republished as #{})",
                    ack.sequence
                )
            })?;
        Ok(Replayed {
            id,
            subject,
            msg_id,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// `<original id>/replay/<dlq stream>/<id>/<dead-lettered at, ns>`: distinct from the
    /// original (which the duplicate window would drop) and from any other dead letter's.
    fn replay_msg_id(&self, letter: &DeadLetter) -> String {
        format!(
            "{}/replay/{}/{}/{}",
            letter.msg_id.as_deref().unwrap_or("dlq"),
            self.bus.dead_letter_stream_name(),
            letter.id,
            letter.dead_lettered_at.unix_timestamp_nanos()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: &[u8]) -> DeadLetter {
        DeadLetter {
            id: 1,
            subject: None,
            consumer: None,
            reason: None,
            original_sequence: None,
            msg_id: None,
            dead_lettered_at: OffsetDateTime::UNIX_EPOCH,
            headers: HeaderMap::new(),
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn a_preview_is_one_line_and_cut_with_an_ellipsis() {
        assert_eq!(letter(b"{\"a\":\n1}").preview(20), "{\"a\": 1}");
        assert_eq!(letter(b"abcdef").preview(4), "abc…");
        assert_eq!(letter(b"abcd").preview(4), "abcd");
        assert_eq!(letter(&[0xff, b'x']).preview(4), "\u{fffd}x");
    }

    #[test]
    fn the_time_is_rfc3339_in_utc() {
        assert_eq!(
            letter(b"").dead_lettered_at_rfc3339(),
            "1970-01-01T00:00:00Z"
        );
    }
}
