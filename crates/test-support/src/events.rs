//! What a test's event streams hold: its bus, the messages of its streams, its domain events
//! and dead letters, and waiting for a consumer to settle.

use serde_json::Value;

use crate::{TestContext, WAIT, eventually};

/// Publishes `event` again without its message id, as a redelivery after a crash (or a dead
/// letter replayed) would arrive: JetStream's duplicate window does not drop it.
pub async fn redeliver<E: common::events::Event>(bus: &common::events::EventBus, event: &E) {
    let payload = match serde_json::to_vec(event) {
        Ok(payload) => payload,
        Err(error) => panic!("serialize {}: {error}", E::SUBJECT.token()),
    };
    if let Err(error) = bus
        .publish_bytes(
            bus.subject(E::SUBJECT),
            async_nats::HeaderMap::new(),
            payload.into(),
        )
        .await
    {
        panic!("redeliver {}: {error:#}", E::SUBJECT.token());
    }
}

/// One message read back from a stream of this test's namespace.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The NATS subject it was published on.
    pub subject: String,
    /// Its JSON payload (`Value::Null` if it is not JSON).
    pub payload: Value,
    /// Its headers as name → first value.
    pub headers: std::collections::HashMap<String, String>,
}

impl TestContext {
    /// A bus on this test's namespace (creates the streams if no service did yet).
    pub async fn bus(&self) -> common::events::EventBus {
        let config = match common::events::NatsConfig::from_env(&self.env("test")) {
            Ok(config) => config,
            Err(error) => panic!("test bus configuration: {error}"),
        };
        match common::events::EventBus::connect(&config, "test").await {
            Ok(bus) => bus,
            Err(error) => panic!("connect test bus: {error:#}"),
        }
    }

    /// Everything currently in one of this test's streams, oldest first.
    pub async fn stream_messages(&self, stream: &str) -> Vec<StoredEvent> {
        let bus = self.bus().await;
        // The bus created both streams: one that cannot be read is a failure, never "empty".
        let stream = match bus.jetstream().get_stream(stream).await {
            Ok(stream) => stream,
            Err(error) => panic!("stream {stream}: {error}"),
        };
        let state = match stream.get_info().await {
            Ok(info) => info.state,
            Err(error) => panic!("stream info: {error}"),
        };
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = match stream.get_raw_message(sequence).await {
                Ok(message) => message,
                // Deleted (a replayed dead letter) or expired: not part of the stream any more.
                Err(error)
                    if error.kind()
                        == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
                {
                    continue;
                }
                Err(error) => panic!("message {sequence}: {error}"),
            };
            let headers = message
                .headers
                .iter()
                .filter_map(|(name, values)| {
                    values.first().map(|v| (name.to_string(), v.to_string()))
                })
                .collect();
            out.push(StoredEvent {
                subject: message.subject.to_string(),
                payload: serde_json::from_slice(&message.payload).unwrap_or(Value::Null),
                headers,
            });
        }
        out
    }

    /// The domain events published so far in this test, as (original subject name, payload).
    pub async fn events(&self) -> Vec<(String, Value)> {
        let prefix = format!("{}.events.", self.namespace);
        self.stream_messages(&format!("{}_events", self.namespace))
            .await
            .into_iter()
            .filter_map(|m| {
                let token = m.subject.strip_prefix(&prefix)?;
                let subject = common::events::Subject::from_token(token)?;
                Some((subject.name().to_owned(), m.payload))
            })
            .collect()
    }

    /// Waits until the durable consumer has handled everything in the stream: nothing left to
    /// deliver, nothing awaiting an ack, and (when `no_redeliveries`) nothing redelivered —
    /// so an assertion that "nothing changed" is made after the message was really processed.
    pub async fn consumer_settled(&self, consumer: &str, no_redeliveries: bool) {
        let bus = self.bus().await;
        let stream = match bus.jetstream().get_stream(bus.stream_name()).await {
            Ok(stream) => stream,
            Err(error) => panic!("event stream: {error}"),
        };
        eventually(&format!("consumer {consumer} to settle"), WAIT, || async {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(consumer).await.ok()?;
            let info = consumer.info().await.ok()?;
            let settled = info.num_pending == 0
                && info.num_ack_pending == 0
                && (!no_redeliveries || info.num_redelivered == 0);
            settled.then_some(())
        })
        .await;
    }

    /// Waits until the domain events of this test satisfy `check`, returning them.
    pub async fn events_where(
        &self,
        what: &str,
        check: impl Fn(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        eventually(what, WAIT, || async {
            let events = self.events().await;
            check(&events).then_some(events)
        })
        .await
    }

    /// The dead letters so far in this test.
    pub async fn dead_letters(&self) -> Vec<StoredEvent> {
        self.stream_messages(&format!("{}_dlq", self.namespace))
            .await
    }
}
