//! One scrape's values in the Prometheus text format, written by `prometheus-client` from a
//! `Collector` so that each metric has one `# HELP`/`# TYPE` header followed by the series of
//! every service.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use super::http::{LATENCY_BUCKETS, RequestSnapshot};
use super::names::{self, family as base};
use super::service::{ConsumerSnapshot, ServiceSnapshot};
use crate::events::{ConsumerCounts, SubjectCounts};

/// Everything one scrape read.
#[derive(Debug)]
pub(super) struct Exposition {
    pub(super) http: Vec<RequestSnapshot>,
    pub(super) services: Vec<ServiceSnapshot>,
    /// The process's CPU seconds, where the system says.
    pub(super) cpu_seconds: Option<f64>,
}

impl Exposition {
    pub(super) fn encode_text(self) -> anyhow::Result<String> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut body = String::new();
        prometheus_text::encode(&mut body, &registry)
            .map_err(|_| anyhow::anyhow!("encode metrics"))?;
        Ok(body)
    }

    fn subjects(&self) -> impl Iterator<Item = (&'static str, SubjectCounts)> {
        self.services
            .iter()
            .flat_map(|s| s.subjects.iter().map(|&counts| (s.service, counts)))
    }

    fn consumers(&self) -> impl Iterator<Item = (&'static str, &ConsumerSnapshot)> {
        self.services
            .iter()
            .flat_map(|s| s.consumers.iter().map(move |c| (s.service, c)))
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        family(
            e,
            names::HTTP_REQUESTS,
            "HTTP responses by route template (unmatched: no route), method and status.",
            self.http
                .iter()
                .map(|r| (r.labels(), ConstCounter::new(r.count()))),
        )?;
        {
            let mut family = e.encode_descriptor(
                base(names::HTTP_REQUEST_DURATION),
                "Time from routing a request to its response head, by route, method and status.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for r in &self.http {
                let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                    .into_iter()
                    .chain([f64::INFINITY])
                    .zip(r.buckets)
                    .collect();
                family
                    .encode_family(&r.labels())?
                    .encode_histogram::<NoLabelSet>(r.sum_seconds, r.count(), &buckets, None)?;
            }
        }
        let subject = |service: &'static str, counts: &SubjectCounts| {
            [("service", service), ("subject", counts.subject.name())]
        };
        family(
            e,
            names::EVENTS_PUBLISHED,
            "Events the outbox relay published and JetStream acknowledged, by subject.",
            self.subjects()
                .map(|(s, c)| (subject(s, &c), ConstCounter::new(c.published))),
        )?;
        family(
            e,
            names::EVENTS_PUBLISH_DUPLICATES,
            "Of the published, those JetStream dropped as repeats of a message id it stored.",
            self.subjects()
                .map(|(s, c)| (subject(s, &c), ConstCounter::new(c.duplicates))),
        )?;
        family(
            e,
            names::EVENTS_PUBLISH_FAILURES,
            "Publishes or acks that failed (the event stays in the outbox), by subject.",
            self.subjects()
                .map(|(s, c)| (subject(s, &c), ConstCounter::new(c.failed))),
        )?;
        let per_consumer: [(&'static str, &str, CountOf); 4] = [
            (
                names::EVENTS_CONSUMED,
                "Messages delivered to the listener of a durable consumer.",
                |c| c.consumed,
            ),
            (
                names::EVENTS_ACKED,
                "Messages handled, or recognised as already applied, and acknowledged.",
                |c| c.acked,
            ),
            (
                names::EVENTS_RETRIED,
                "Messages negatively acknowledged, to be redelivered after a delay.",
                |c| c.retried,
            ),
            (
                names::EVENTS_DEAD_LETTERED,
                "Messages copied to the dead-letter stream and terminated.",
                |c| c.dead_lettered,
            ),
        ];
        for (name, help, value) in per_consumer {
            family(
                e,
                name,
                help,
                self.consumers()
                    .map(|(s, c)| (c.labels(s), ConstCounter::new(value(&c.counts)))),
            )?;
        }
        family(
            e,
            names::EVENTS_OUTBOX_PENDING,
            "Events waiting in their documents (not yet published, or published and removed a moment later), read from MongoDB.",
            self.services.iter().filter_map(|s| {
                let pending = s.outbox_pending?;
                Some(([("service", s.service)], ConstGauge::new(pending)))
            }),
        )?;
        family(
            e,
            names::EVENTS_STREAM_BYTES,
            "Bytes in the event stream, read from JetStream.",
            self.services.iter().filter_map(|s| {
                let (bytes, _) = s.stream?;
                Some(([("service", s.service)], ConstGauge::new(bytes)))
            }),
        )?;
        family(
            e,
            names::EVENTS_STREAM_MAX_BYTES,
            "The most the event stream holds; at it, new events wait in the outboxes.",
            self.services.iter().filter_map(|s| {
                let (_, max) = s.stream?;
                Some(([("service", s.service)], ConstGauge::new(max)))
            }),
        )?;
        family(
            e,
            names::EVENTS_CONSUMER_PENDING,
            "Messages not yet delivered to a durable consumer, read from JetStream.",
            self.consumers().filter_map(|(s, c)| {
                let (pending, _) = c.pending?;
                Some((c.labels(s), ConstGauge::new(pending)))
            }),
        )?;
        family(
            e,
            names::EVENTS_CONSUMER_ACK_PENDING,
            "Messages delivered to a durable consumer and not yet acked, read from JetStream.",
            self.consumers().filter_map(|(s, c)| {
                let (_, ack_pending) = c.pending?;
                Some((c.labels(s), ConstGauge::new(ack_pending)))
            }),
        )?;
        family(
            e,
            names::PROCESS_CPU,
            "CPU seconds (user and system) the serving process has used.",
            self.cpu_seconds
                .map(|seconds| ([] as [(&str, &str); 0], ConstCounter::new(seconds))),
        )?;
        family(
            e,
            names::WORK_DONE,
            "A service's background work (payments: reconcile, refund), by how it ended.",
            self.services.iter().flat_map(|s| {
                s.work.iter().map(|&(work, outcome, n)| {
                    (
                        [("service", s.service), ("work", work), ("outcome", outcome)],
                        ConstCounter::new(n),
                    )
                })
            }),
        )?;
        family(
            e,
            names::WORK_BACKLOG,
            "Items of a service's background work waiting, read from MongoDB.",
            self.services.iter().flat_map(|s| {
                s.backlog.iter().flatten().map(|&(work, n)| {
                    ([("service", s.service), ("work", work)], ConstGauge::new(n))
                })
            }),
        )?;
        Ok(())
    }
}

/// Reads one of a consumer's counters.
type CountOf = fn(&ConsumerCounts) -> u64;

/// Writes one metric's header and then each of its series.
fn family<'a, const N: usize, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    series: impl IntoIterator<Item = ([(&'static str, &'a str); N], M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(base(name), help, None, M::TYPE)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventCounters, Subject};

    /// The value of the sample whose name and labels are exactly `series`.
    fn sample(body: &str, series: &str) -> Option<f64> {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    #[test]
    fn the_events_of_every_service_share_one_header_and_carry_their_service() {
        let tickets = EventCounters::default();
        tickets.published(Subject::TicketCreated);
        tickets.published(Subject::TicketCreated);
        tickets.publish_failed(Subject::TicketUpdated);
        let reserve = tickets.consumer("tickets-order-created");
        reserve.consumed();
        reserve.acked();
        let orders = EventCounters::default();
        orders.published(Subject::OrderCreated);
        let replica = orders.consumer("orders-ticket-created");
        for _ in 0..3 {
            replica.consumed();
        }
        replica.retried();
        replica.acked();
        replica.dead_lettered();

        // As `ServiceMetrics::snapshot` takes them, with the scrape-time values given.
        let snapshot = |service, events: &EventCounters, outbox_pending, pending| ServiceSnapshot {
            service,
            subjects: events.subjects(),
            consumers: events
                .consumers()
                .iter()
                .map(|c| ConsumerSnapshot {
                    name: c.name().to_owned(),
                    counts: c.counts(),
                    pending,
                })
                .collect(),
            outbox_pending,
            stream: outbox_pending.map(|_| (100, 1000)),
            work: outbox_pending
                .map(|_| vec![("refund", "refunded", 3)])
                .unwrap_or_default(),
            backlog: outbox_pending.map(|_| vec![("refund", 2)]),
        };
        let body = Exposition {
            cpu_seconds: Some(1.5),
            http: Vec::new(),
            services: vec![
                snapshot("tickets", &tickets, Some(4), Some((2, 1))),
                snapshot("orders", &orders, None, None),
            ],
        }
        .encode_text()
        .unwrap();

        for name in [
            names::EVENTS_PUBLISHED,
            names::EVENTS_CONSUMED,
            names::EVENTS_OUTBOX_PENDING,
            names::EVENTS_CONSUMER_PENDING,
        ] {
            let header = format!("# TYPE {name} ");
            assert_eq!(body.matches(&header).count(), 1, "{name} in {body}");
        }
        let expected = [
            (
                r#"events_published_total{service="tickets",subject="ticket:created"}"#,
                2.0,
            ),
            (
                r#"events_publish_failures_total{service="tickets",subject="ticket:created"}"#,
                0.0,
            ),
            (
                r#"events_published_total{service="tickets",subject="ticket:updated"}"#,
                0.0,
            ),
            (
                r#"events_publish_failures_total{service="tickets",subject="ticket:updated"}"#,
                1.0,
            ),
            (
                r#"events_published_total{service="orders",subject="order:created"}"#,
                1.0,
            ),
            (
                r#"events_consumed_total{service="tickets",consumer="tickets-order-created"}"#,
                1.0,
            ),
            (
                r#"events_acked_total{service="tickets",consumer="tickets-order-created"}"#,
                1.0,
            ),
            (
                r#"events_consumed_total{service="orders",consumer="orders-ticket-created"}"#,
                3.0,
            ),
            (
                r#"events_retried_total{service="orders",consumer="orders-ticket-created"}"#,
                1.0,
            ),
            (
                r#"events_dead_lettered_total{service="orders",consumer="orders-ticket-created"}"#,
                1.0,
            ),
            (r#"events_outbox_pending{service="tickets"}"#, 4.0),
            ("process_cpu_seconds_total", 1.5),
            (
                r#"work_done_total{service="tickets",work="refund",outcome="refunded"}"#,
                3.0,
            ),
            (r#"work_backlog{service="tickets",work="refund"}"#, 2.0),
            (r#"events_stream_bytes{service="tickets"}"#, 100.0),
            (r#"events_stream_max_bytes{service="tickets"}"#, 1000.0),
            (
                r#"events_consumer_pending{service="tickets",consumer="tickets-order-created"}"#,
                2.0,
            ),
            (
                r#"events_consumer_ack_pending{service="tickets",consumer="tickets-order-created"}"#,
                1.0,
            ),
        ];
        for (series, value) in expected {
            assert_eq!(sample(&body, series), Some(value), "{series} in {body}");
        }
        // Only the subjects a service published; no value where none could be read.
        assert!(
            !body.contains(r#"service="tickets",subject="order:created""#),
            "{body}"
        );
        assert!(
            !body.contains(r#"events_outbox_pending{service="orders"}"#),
            "{body}"
        );
        assert!(
            !body.contains(r#"events_consumer_pending{service="orders""#),
            "{body}"
        );
    }
}
