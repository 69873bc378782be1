//! The JetStream bus: one stream for every domain event, one for dead letters, and publishing
//! with a message id so that a re-publish is deduplicated.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::Subscriber;
use async_nats::jetstream::{self, context, stream};
use bytes::Bytes;
use futures::stream::SelectAll;
use tokio::sync::watch;

use super::catalog::{Event, Subject};
use super::counters::EventCounters;
use crate::config::{ConfigError, Env};
use crate::health::ReadinessCheck;

/// How long JetStream remembers message ids to drop re-publishes of the same event.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long events stay in the stream (for `events tail`, replays and new consumers).
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where the bus is: `NATS_URL` (required) and `EVENT_NAMESPACE` (default `ticketing`), the
/// prefix of every subject and stream name, so that parallel tests never see each other; and
/// how its streams are kept.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port`, or several servers of a cluster, comma-separated.
    pub url: String,
    /// Subject and stream prefix.
    pub namespace: String,
    /// `EVENTS_STREAM_MAX_BYTES` (default 256 MiB): the most each stream holds. A full stream
    /// refuses new events rather than dropping unread ones; they wait in the outboxes, and
    /// `/readyz` and `/metrics` say so, until there is room again. JetStream reserves it on
    /// its volume when the stream is created: the events and dead-letter streams together
    /// need twice this much of its storage.
    pub max_bytes: i64,
    /// `NATS_STREAM_REPLICAS` (default 1): copies of each stream in a JetStream cluster. A
    /// stream that already has more keeps them.
    pub replicas: usize,
}

/// How long [`EventBus::tap`] waits for the server to confirm its subscriptions.
const TAP_CONFIRMED_WITHIN: Duration = Duration::from_secs(10);

/// Tries at creating or updating a stream at start: a JetStream cluster busy electing the
/// leaders of new replicated streams may not answer one request in time.
const STREAM_ATTEMPTS: u32 = 3;

/// The wait before reconnection attempt `attempts`: at once, then doubling from 1 ms up to
/// `RECONNECT_LONGEST`, so that a server that is back is found within that (async-nats's own
/// waits grow to seconds, which the outboxes and listeners would wait out too).
fn reconnect_delay(attempts: usize) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    Duration::from_millis(2_u64.pow(exponent) / 2).min(RECONNECT_LONGEST)
}

/// The longest wait between two attempts to reconnect to NATS.
const RECONNECT_LONGEST: Duration = Duration::from_millis(250);

/// Whether looking a stream up failed because there is none.
fn is_not_found(error: &context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        context::GetStreamErrorKind::JetStream(error)
            if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The most a stream holds unless `EVENTS_STREAM_MAX_BYTES` says otherwise: 256 MiB, twice of
/// which fits the development NATS volume (2 GiB) with room to spare.
const DEFAULT_MAX_BYTES: i64 = 256 << 20;

/// Room kept free before a stream counts as full: more than any one event takes.
const FULL_MARGIN: u64 = 64 * 1024;

impl NatsConfig {
    /// The bus at `url` in `namespace`, its streams kept as by default.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: namespace.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            replicas: 1,
        }
    }

    /// Reads `NATS_URL` and `EVENT_NAMESPACE`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let namespace = env
            .get("EVENT_NAMESPACE")
            .unwrap_or_else(|| "ticketing".to_owned());
        let valid = namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(ConfigError::Invalid {
                name: "EVENT_NAMESPACE".to_owned(),
                value: namespace,
                reason: "only letters, digits, '_' and '-' are allowed".to_owned(),
            });
        }
        let max_bytes: i64 = env.parse_or("EVENTS_STREAM_MAX_BYTES", DEFAULT_MAX_BYTES)?;
        if max_bytes <= FULL_MARGIN as i64 {
            return Err(ConfigError::Invalid {
                name: "EVENTS_STREAM_MAX_BYTES".to_owned(),
                value: max_bytes.to_string(),
                reason: format!("expected more than {FULL_MARGIN} bytes"),
            });
        }
        let url = env.required("NATS_URL")?;
        let invalid = |reason: String| ConfigError::Invalid {
            name: "NATS_URL".to_owned(),
            value: url.clone(),
            reason,
        };
        let servers = servers(&url);
        if servers.is_empty() {
            return Err(invalid("no server".to_owned()));
        }
        for server in servers {
            server
                .parse::<async_nats::ServerAddr>()
                .map_err(|error| invalid(format!("{server}: {error}")))?;
        }
        Ok(Self {
            url,
            namespace,
            max_bytes,
            replicas: env.parse_or("NATS_STREAM_REPLICAS", 1_usize)?.max(1),
        })
    }
}

/// The servers a `NATS_URL` names: one, or a cluster's several, comma-separated. async-nats
/// takes one URL per string (it would read `a,b` as one host with a bad port), so every
/// connection goes through this.
pub fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .collect()
}

/// A connection to JetStream within one namespace. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    namespace: String,
    counters: EventCounters,
    /// Counts the connections made to the server, the first and every reconnection.
    connections: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// Connects and creates or updates the event and dead-letter streams (idempotent, so
    /// every replica of every service may do it at start-up).
    pub async fn connect(config: &NatsConfig, name: &str) -> anyhow::Result<Self> {
        let connections = Arc::new(watch::channel(0).0);
        let counted = connections.clone();
        let client = async_nats::ConnectOptions::new()
            .name(name)
            // Keep reconnecting forever: a NATS restart must not take the services down.
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let counted = counted.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        counted.send_modify(|count| *count += 1);
                    }
                }
            })
            .connect(servers(&config.url))
            .await
            .with_context(|| format!("connect to nats at {}", config.url))?;
        // The callback counts the first connection a moment after `connect` returns; a publish
        // in between would take that for a reconnection.
        let mut first = connections.subscribe();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), first.wait_for(|count| *count > 0)).await;
        let bus = Self {
            jetstream: jetstream::new(client.clone()),
            client,
            namespace: config.namespace.clone(),
            counters: EventCounters::default(),
            connections,
        };
        bus.ensure_streams(config).await?;
        Ok(bus)
    }

    async fn ensure_streams(&self, config: &NatsConfig) -> anyhow::Result<()> {
        for (name, subjects) in [
            (self.stream_name(), format!("{}.events.>", self.namespace)),
            (
                self.dead_letter_stream_name(),
                format!("{}.dlq.>", self.namespace),
            ),
        ] {
            let mut attempt = 1;
            while let Err(error) = self.ensure_stream(config, &name, &subjects).await {
                if attempt == STREAM_ATTEMPTS {
                    return Err(error);
                }
                attempt += 1;
                tracing::warn!(error = format!("{error:#}"), stream = %name, "stream not ready; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Ok(())
    }

    async fn ensure_stream(
        &self,
        config: &NatsConfig,
        name: &str,
        subjects: &str,
    ) -> anyhow::Result<()> {
        // Raised by an operator (or a cluster's own configuration), never lowered here: a
        // stream whose replicas cannot be read is left alone.
        let replicas = match self.jetstream.get_stream(name).await {
            Ok(mut existing) => {
                let info = existing.info().await.context("read stream")?;
                info.config.num_replicas
            }
            Err(error) if is_not_found(&error) => 0,
            Err(error) => return Err(error).with_context(|| format!("look up stream {name}")),
        };
        self.jetstream
            .create_or_update_stream(stream::Config {
                name: name.to_owned(),
                subjects: vec![subjects.to_owned()],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: RETENTION,
                max_bytes: config.max_bytes,
                discard: stream::DiscardPolicy::New,
                num_replicas: replicas.max(config.replicas),
                ..Default::default()
            })
            .await
            .with_context(|| format!("create or update stream {name}"))?;
        Ok(())
    }

    /// The event stream's bytes and its most, read from JetStream.
    pub async fn stream_usage(&self) -> anyhow::Result<(u64, i64)> {
        let mut stream = self
            .jetstream
            .get_stream(self.stream_name())
            .await
            .context("get event stream")?;
        let info = stream.info().await.context("read event stream")?;
        Ok((info.state.bytes, info.config.max_bytes))
    }

    /// Readiness: the event stream has room. A full stream takes no events; they wait in the
    /// outboxes until there is room again, so a service that writes cannot finish its work.
    pub fn stream_room_check(&self) -> ReadinessCheck {
        let bus = self.clone();
        ReadinessCheck::new("events-stream", move || {
            let bus = bus.clone();
            async move {
                let (bytes, max) = bus.stream_usage().await?;
                let full = u64::try_from(max).is_ok_and(|max| bytes + FULL_MARGIN >= max);
                anyhow::ensure!(!full, "the event stream is full: {bytes} of {max} bytes");
                Ok(())
            }
        })
    }

    /// The namespace of this bus.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The stream holding every domain event.
    pub fn stream_name(&self) -> String {
        format!("{}_events", self.namespace)
    }

    /// The stream holding dead letters.
    pub fn dead_letter_stream_name(&self) -> String {
        format!("{}_dlq", self.namespace)
    }

    /// The NATS subject of `subject` in this namespace.
    pub fn subject(&self, subject: Subject) -> String {
        format!("{}.events.{}", self.namespace, subject.token())
    }

    /// The subject dead letters of `consumer` go to.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("{}.dlq.{consumer}", self.namespace)
    }

    /// The catalog subject of a NATS subject of this namespace.
    pub fn parse_subject(&self, nats_subject: &str) -> Option<Subject> {
        nats_subject
            .strip_prefix(&self.namespace)
            .and_then(|rest| rest.strip_prefix(".events."))
            .and_then(Subject::from_token)
    }

    /// The counters of what this bus published and its listeners consumed, for `/metrics`.
    pub fn counters(&self) -> &EventCounters {
        &self.counters
    }

    /// The JetStream context, for consumers and inspection.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Publishes `event` directly and waits for JetStream's acknowledgement. Services publish
    /// through their [`Outbox`](super::Outbox) instead, so that no event is lost; this is for
    /// tools and tests.
    pub async fn publish<E: Event>(&self, event: &E) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(event).context("serialize event")?;
        let traceparent = crate::telemetry::current_traceparent();
        self.publish_raw(
            E::SUBJECT,
            &event.event_id(),
            traceparent.as_deref(),
            Bytes::from(payload),
        )
        .await?
        .await
        .map(|_duplicate| ())
    }

    /// Sends one payload with its message id (and the W3C trace context it belongs to) and
    /// returns a future of the acknowledgement, so that a batch can be sent before waiting for
    /// the acks. The acknowledgement says whether JetStream dropped the message as a duplicate
    /// of one with the same id it already stored.
    pub async fn publish_raw(
        &self,
        subject: Subject,
        event_id: &str,
        traceparent: Option<&str>,
        payload: Bytes,
    ) -> anyhow::Result<impl Future<Output = anyhow::Result<bool>> + use<>> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event_id);
        if let Some(traceparent) = traceparent {
            headers.insert(crate::telemetry::TRACEPARENT, traceparent);
        }
        let mut reconnected = self.reconnections();
        let ack = self
            .jetstream
            .publish_with_headers(self.subject(subject), headers, payload)
            .await
            .with_context(|| format!("publish {subject}"))?;
        Ok(async move {
            // What went out on a connection that then broke is never acknowledged: give up at
            // the reconnection rather than at the ack timeout (5 s), and let it be sent again
            // (JetStream drops the copy if the first one did land).
            tokio::select! {
                biased;
                ack = ack => {
                    Ok(ack.context("await publish acknowledgement")?.duplicate)
                }
                _ = reconnected.changed() => {
                    Err(anyhow::anyhow!("reconnected to nats before the acknowledgement came"))
                }
            }
        })
    }

    /// Changes at every reconnection to the server after this call: what was published
    /// before it and is not acknowledged yet may never be, so it is better sent again (a
    /// message the client held back during the outage and sends afterwards is acked, and
    /// JetStream drops the second copy).
    pub fn reconnections(&self) -> watch::Receiver<u64> {
        self.connections.subscribe()
    }

    /// Every event on `subjects` that reaches this process's server once this returns, as NATS
    /// passes it on: no consumer, nothing acknowledged or delivered again, so what passes
    /// while this process is disconnected (or before a cluster's other servers learn of the
    /// subscription) is missed. For a cache that drops what an event changes and bounds how
    /// long it keeps anything else; work owed to each event takes a [`Listener`] instead. The
    /// user needs permission to subscribe to them (`infra/k8s/base/nats/auth.conf`).
    ///
    /// [`Listener`]: super::Listener
    pub async fn tap(&self, subjects: &[Subject]) -> anyhow::Result<SelectAll<Subscriber>> {
        let mut tapped = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let subscriber = self
                .client
                .subscribe(self.subject(*subject))
                .await
                .with_context(|| format!("subscribe to {subject}"))?;
            tapped.push(subscriber);
        }
        // The server handles one connection's messages in order: once a request sent after the
        // subscriptions is answered, it has registered them.
        tokio::time::timeout(TAP_CONFIRMED_WITHIN, self.stream_usage())
            .await
            .context("nats did not confirm the subscriptions")?
            .context("confirm the subscriptions")?;
        Ok(futures::stream::select_all(tapped))
    }

    /// Publishes arbitrary bytes on an arbitrary subject with headers (dead letters, tests).
    pub async fn publish_bytes(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> anyhow::Result<()> {
        self.jetstream
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .with_context(|| format!("publish to {subject}"))?
            .await
            .with_context(|| format!("await acknowledgement from {subject}"))?;
        Ok(())
    }

    /// Readiness: the connection to NATS is up.
    pub fn readiness_check(&self) -> ReadinessCheck {
        let client = self.client.clone();
        ReadinessCheck::new("nats", move || {
            let state = client.connection_state();
            async move {
                match state {
                    async_nats::connection::State::Connected => Ok(()),
                    other => Err(anyhow::anyhow!("nats connection is {other:?}")),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Result<NatsConfig, ConfigError> {
        NatsConfig::from_env(&Env::from_pairs([("NATS_URL", url.to_owned())]))
    }

    #[test]
    fn a_nats_url_may_list_a_clusters_servers_comma_separated() {
        let url = "nats://127.0.0.1:4222, nats://127.0.0.1:4223,127.0.0.1:4224,";
        assert_eq!(config(url).unwrap().url, url);
        assert_eq!(
            servers(url),
            [
                "nats://127.0.0.1:4222",
                "nats://127.0.0.1:4223",
                "127.0.0.1:4224"
            ]
        );
        // What async-nats makes of the list unsplit: one server with a bad port.
        assert!(url.parse::<async_nats::ServerAddr>().is_err());
    }

    #[test]
    fn reconnection_is_tried_at_once_then_at_most_every_quarter_second() {
        let waits: Vec<u128> = [1, 2, 3, 9, 10, 100, usize::MAX]
            .into_iter()
            .map(|attempt| reconnect_delay(attempt).as_millis())
            .collect();
        assert_eq!(waits, [0, 1, 2, 128, 250, 250, 250]);
    }

    #[test]
    fn a_nats_url_without_a_server_or_with_a_bad_one_is_refused_by_name() {
        for url in [" , ", "nats://127.0.0.1:4222,http://127.0.0.1:80"] {
            let error = config(url).unwrap_err().to_string();
            assert!(error.contains("NATS_URL"), "{url}: {error}");
        }
    }
}
