//! The names of the series `/metrics` serves, as Prometheus sees them: tests, the bench and
//! the alert rules read these instead of repeating strings.

/// Counter: HTTP responses by `route` (template, or `unmatched`), `method`, `status`.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Histogram (seconds): time from routing a request to its response head, same labels.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Counter: events the outbox relay published, by `service`, `subject`.
pub const EVENTS_PUBLISHED: &str = "events_published_total";
/// Counter: of the published, those JetStream dropped as repeats of a stored message id, by
/// `service`, `subject`.
pub const EVENTS_PUBLISH_DUPLICATES: &str = "events_publish_duplicates_total";
/// Counter: publishes or acknowledgements that failed, by `service`, `subject`.
pub const EVENTS_PUBLISH_FAILURES: &str = "events_publish_failures_total";
/// Counter: messages delivered to a listener, by `service`, `consumer`.
pub const EVENTS_CONSUMED: &str = "events_consumed_total";
/// Counter: messages handled and acknowledged, by `service`, `consumer`.
pub const EVENTS_ACKED: &str = "events_acked_total";
/// Counter: messages negatively acknowledged for redelivery, by `service`, `consumer`.
pub const EVENTS_RETRIED: &str = "events_retried_total";
/// Counter: messages dead-lettered, by `service`, `consumer`.
pub const EVENTS_DEAD_LETTERED: &str = "events_dead_lettered_total";
/// Gauge, read at scrape: events waiting in their documents (not yet published, or published
/// and removed a moment later), by `service`.
pub const EVENTS_OUTBOX_PENDING: &str = "events_outbox_pending";
/// Gauge, read at scrape: messages not yet delivered to a consumer, by `service`, `consumer`.
pub const EVENTS_CONSUMER_PENDING: &str = "events_consumer_pending";
/// Gauge, read at scrape: messages delivered and not yet acked, by `service`, `consumer`.
pub const EVENTS_CONSUMER_ACK_PENDING: &str = "events_consumer_ack_pending";

/// Gauge, read at scrape: bytes in the event stream, by `service` (each reads the one stream).
pub const EVENTS_STREAM_BYTES: &str = "events_stream_bytes";
/// Gauge, read at scrape: the most the event stream holds (`EVENTS_STREAM_MAX_BYTES`), by
/// `service`; at it, new events wait in the outboxes.
pub const EVENTS_STREAM_MAX_BYTES: &str = "events_stream_max_bytes";

/// Counter: a service's background work done, by `service`, `work` (`reconcile`, `refund`),
/// `outcome`.
pub const WORK_DONE: &str = "work_done_total";
/// Gauge, read at scrape: items of a service's background work waiting, by `service`, `work`.
pub const WORK_BACKLOG: &str = "work_backlog";

/// Counter, read at scrape: CPU seconds (user + system) the serving process has used.
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";

/// Every name above, for checks that a rule or dashboard names only served series.
pub const ALL: [&str; 17] = [
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    EVENTS_PUBLISHED,
    EVENTS_PUBLISH_DUPLICATES,
    EVENTS_PUBLISH_FAILURES,
    EVENTS_CONSUMED,
    EVENTS_ACKED,
    EVENTS_RETRIED,
    EVENTS_DEAD_LETTERED,
    EVENTS_OUTBOX_PENDING,
    EVENTS_CONSUMER_PENDING,
    EVENTS_CONSUMER_ACK_PENDING,
    EVENTS_STREAM_BYTES,
    EVENTS_STREAM_MAX_BYTES,
    WORK_DONE,
    WORK_BACKLOG,
    PROCESS_CPU,
];

/// The name a family is registered under with `prometheus-client`, which adds the `_total`
/// of counters and the unit of histograms itself.
pub(crate) fn family(name: &'static str) -> &'static str {
    name.strip_suffix("_total")
        .or_else(|| name.strip_suffix("_seconds"))
        .unwrap_or(name)
}

/// `name{label="value",…}` as the exposition writes a series (values are not escaped: for
/// tests and tools matching known series).
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}
