//! What `/metrics` reports about one service besides HTTP: its event bus's counters and, read
//! at each scrape with a timeout, its outbox backlog and its consumers' pending counts.

use std::fmt;
use std::time::Duration;

use futures::future::join_all;

use super::WorkMetrics;
use crate::events::{ConsumerCounts, EventBus, Outbox, SubjectCounts};

/// How long a scrape waits for each value read at scrape time (the outbox backlog from MongoDB,
/// a consumer's counts from JetStream) before leaving it out.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The sources of one service's event series. Filled as the service's outbox relay and
/// listeners are added to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceMetrics {
    bus: Option<EventBus>,
    outbox: Option<Outbox>,
    work: Option<WorkMetrics>,
}

/// One service's values at one scrape.
#[derive(Debug)]
pub(super) struct ServiceSnapshot {
    pub(super) service: &'static str,
    /// The subjects this service published or tried to.
    pub(super) subjects: Vec<SubjectCounts>,
    pub(super) consumers: Vec<ConsumerSnapshot>,
    /// `None` without an outbox, or when it could not be read in time.
    pub(super) outbox_pending: Option<u64>,
    /// The event stream's (bytes, most bytes), when the service has a bus and JetStream
    /// answered in time.
    pub(super) stream: Option<(u64, i64)>,
    /// `(work, outcome, count)` of the service's background work.
    pub(super) work: Vec<(&'static str, &'static str, u64)>,
    /// `(work, waiting)`, when the service reads a backlog and it answered in time.
    pub(super) backlog: Option<Vec<(&'static str, u64)>>,
}

/// One durable consumer's values at one scrape.
#[derive(Debug)]
pub(super) struct ConsumerSnapshot {
    pub(super) name: String,
    pub(super) counts: ConsumerCounts,
    /// (`num_pending`, `num_ack_pending`), when JetStream answered in time.
    pub(super) pending: Option<(u64, u64)>,
}

impl ConsumerSnapshot {
    pub(super) fn labels(&self, service: &'static str) -> [(&'static str, &str); 2] {
        [("service", service), ("consumer", &self.name)]
    }
}

impl ServiceMetrics {
    /// Reports `bus`'s counters and its consumers' pending counts.
    pub(crate) fn watch_bus(&mut self, bus: &EventBus) {
        self.bus.get_or_insert_with(|| bus.clone());
    }

    /// Reports the service's background work.
    pub(crate) fn watch_work(&mut self, work: &WorkMetrics) {
        self.work = Some(work.clone());
    }

    /// Reports `outbox`'s backlog.
    pub(crate) fn watch_outbox(&mut self, outbox: &Outbox) {
        self.outbox = Some(outbox.clone());
    }

    /// The values of this service, reading the scrape-time ones concurrently, each bounded by
    /// [`SCRAPE_TIMEOUT`].
    pub(super) async fn snapshot(&self, service: &'static str) -> ServiceSnapshot {
        let counters = self.bus.as_ref().map(EventBus::counters);
        let consumers = counters.map(|c| c.consumers()).unwrap_or_default();
        let outbox = async {
            match &self.outbox {
                Some(outbox) => bounded(service, "outbox backlog", outbox.pending()).await,
                None => None,
            }
        };
        let pending = join_all(consumers.iter().map(|consumer| async {
            let bus = self.bus.as_ref()?;
            bounded(
                service,
                consumer.name(),
                consumer_pending(bus, consumer.name()),
            )
            .await
        }));
        let stream = async {
            match &self.outbox {
                // Services that publish: a full stream stops their events.
                Some(_) => {
                    let bus = self.bus.as_ref()?;
                    bounded(service, "event stream", bus.stream_usage()).await
                }
                None => None,
            }
        };
        let backlog = async {
            match self.work.as_ref().and_then(WorkMetrics::backlog) {
                Some(read) => bounded(service, "work backlog", read).await,
                None => None,
            }
        };
        let (outbox_pending, pending, stream, backlog) =
            tokio::join!(outbox, pending, stream, backlog);
        ServiceSnapshot {
            service,
            subjects: counters.map(|c| c.subjects()).unwrap_or_default(),
            consumers: consumers
                .iter()
                .zip(pending)
                .map(|(counters, pending)| ConsumerSnapshot {
                    name: counters.name().to_owned(),
                    counts: counters.counts(),
                    pending,
                })
                .collect(),
            outbox_pending,
            stream,
            work: self
                .work
                .as_ref()
                .map(WorkMetrics::counts)
                .unwrap_or_default(),
            backlog,
        }
    }
}

/// A durable consumer's messages not yet delivered, and delivered but not yet acknowledged.
async fn consumer_pending(bus: &EventBus, consumer: &str) -> anyhow::Result<(u64, u64)> {
    let stream = bus
        .jetstream()
        .get_stream_no_info(bus.stream_name())
        .await?;
    let info = stream.consumer_info(consumer).await?;
    Ok((info.num_pending, info.num_ack_pending as u64))
}

/// `read`'s value, or `None` (logged) when it fails or takes longer than [`SCRAPE_TIMEOUT`]: a
/// scrape never hangs on a dependency, and a missing sample is not mistaken for a zero.
async fn bounded<T, E: fmt::Display>(
    service: &str,
    what: &str,
    read: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout(SCRAPE_TIMEOUT, read).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::warn!(service, what, %error, "metrics: could not read");
            None
        }
        Err(_) => {
            tracing::warn!(
                service,
                what,
                timeout_ms = SCRAPE_TIMEOUT.as_millis() as u64,
                "metrics: read timed out"
            );
            None
        }
    }
}
