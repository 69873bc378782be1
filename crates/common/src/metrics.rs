//! Prometheus metrics at `/metrics`, the same for every service: HTTP requests by route
//! template, events published and consumed, and, read when scraped, the outbox backlog and the
//! JetStream consumers' pending counts.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `route` (template, or `unmatched`), `method`, `status` |
//! | `http_request_duration_seconds` | histogram, 0.5 ms – 5 s | `route`, `method`, `status` |
//! | `events_published_total` | counter | `service`, `subject` (`ticket:created`, …) |
//! | `events_publish_failures_total` | counter | `service`, `subject` |
//! | `events_consumed_total` | counter | `service`, `consumer` (`tickets-order-created`, …) |
//! | `events_acked_total` | counter | `service`, `consumer` |
//! | `events_retried_total` | counter | `service`, `consumer` |
//! | `events_dead_lettered_total` | counter | `service`, `consumer` |
//! | `events_outbox_pending` | gauge, at scrape | `service` |
//! | `events_consumer_pending` | gauge, at scrape | `service`, `consumer` |
//! | `events_consumer_ack_pending` | gauge, at scrape | `service`, `consumer` |
//!
//! The hot paths only touch atomics. An event counter is one `fetch_add` on a slot resolved when
//! the bus or the listener was built. A request finds its series (route, method, status) under a
//! shared read lock and adds to two atomics, without allocating; only the first request of a
//! series takes the write lock. The series' histogram count is also `http_requests_total`
//! (`prometheus-client`'s own `Histogram` locks a mutex per observation, and a counter beside
//! it would cost a second lookup). Snapshots, sorting, labels and the text format (written by
//! `prometheus-client`, from a `Collector`) happen when Prometheus scrapes. Series never come
//! from what a client chooses: routes are templates, methods outside the standard ones are
//! `other`.
//!
//! HTTP series carry no `service` label: a route template belongs to one service, and in
//! Kubernetes the scrape target says which. Event series carry it, so that a server serving
//! every service (`ticketing up`) exposes all of them in one valid document. Requests for
//! `/metrics` itself are not counted. `/metrics` answers 404 to anything that came through a
//! reverse proxy (an `X-Forwarded-For` or `Forwarded` header, which the ingress and compose's
//! nginx always set): it is for Prometheus inside the cluster, scraping pods directly.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, State};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::join_all;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::error::ApiError;
use crate::events::{EventBus, Outbox, Subject};

/// Where every server serves its metrics, at the root beside `/healthz` (never under `/api`).
pub const PATH: &str = "/metrics";

/// The `route` of requests no route matched (404s), so that probing for paths adds no series.
const UNMATCHED: &str = "unmatched";

/// How long a scrape waits for each value read at scrape time (the outbox backlog from MongoDB,
/// a consumer's counts from JetStream) before leaving it out.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bounds, in seconds, of the latency buckets: 0.5 ms (a cached read) to 5 s (a stuck
/// dependency), ×2 to ×2.5 apart; slower requests land in `+Inf`.
const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The request series of one server, keyed by route template, then method and status.
#[derive(Clone, Default)]
pub(crate) struct HttpMetrics {
    routes: Arc<RwLock<HashMap<Box<str>, Vec<RequestSeries>>>>,
}

impl fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

/// One (route, method, status): a latency histogram whose count is also the request count.
struct RequestSeries {
    method: &'static str,
    status: StatusCode,
    /// Requests per bucket, not cumulative; the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl RequestSeries {
    fn new(method: &'static str, status: StatusCode) -> Self {
        Self {
            method,
            status,
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, bucket: usize, nanos: u64) {
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl HttpMetrics {
    /// The layer that records every response of the routes it wraps; it must wrap them with
    /// `Router::layer`, which runs after routing, so that it sees the matched route.
    pub(crate) fn layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics: self.clone(),
        }
    }

    fn record(&self, route: &str, method: &'static str, status: StatusCode, elapsed: Duration) {
        let bucket = LATENCY_BUCKETS.partition_point(|&bound| bound < elapsed.as_secs_f64());
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let matches = |series: &&RequestSeries| series.method == method && series.status == status;
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = routes.get(route).and_then(|all| all.iter().find(matches)) {
                series.observe(bucket, nanos);
                return;
            }
        }
        // The first request of this series (or a race with another first one).
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let all = routes.entry(Box::from(route)).or_default();
        if let Some(series) = all.iter().find(matches) {
            series.observe(bucket, nanos);
        } else {
            let series = RequestSeries::new(method, status);
            series.observe(bucket, nanos);
            all.push(series);
        }
    }

    /// A consistent-enough copy of every series, sorted, taken without holding the lock while
    /// encoding.
    fn snapshot(&self) -> Vec<RequestSnapshot> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut snapshot: Vec<_> = routes
            .iter()
            .flat_map(|(route, all)| {
                all.iter().map(|series| RequestSnapshot {
                    route: route.to_string(),
                    method: series.method,
                    status: series.status,
                    buckets: std::array::from_fn(|i| series.buckets[i].load(Ordering::Relaxed)),
                    sum_seconds: Duration::from_nanos(series.sum_nanos.load(Ordering::Relaxed))
                        .as_secs_f64(),
                })
            })
            .collect();
        drop(routes);
        snapshot
            .sort_by(|a, b| (&a.route, a.method, a.status).cmp(&(&b.route, b.method, b.status)));
        snapshot
    }
}

/// The method as a label: the standard ones, and `other` for the rest, which clients choose.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// Records the responses of the routes it wraps in [`HttpMetrics`].
#[derive(Debug, Clone)]
pub(crate) struct HttpMetricsLayer {
    metrics: HttpMetrics,
}

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = RecordHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordHttp {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RecordHttp<S> {
    inner: S,
    metrics: HttpMetrics,
}

impl<S, B, ResBody> tower::Service<Request<B>> for RecordHttp<S>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RecordFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        let pending = match &route {
            Some(route) if route.as_str() == PATH => None,
            _ => Some(Pending {
                metrics: self.metrics.clone(),
                route,
                method: method_label(request.method()),
                start: Instant::now(),
            }),
        };
        RecordFuture {
            inner: self.inner.call(request),
            pending,
        }
    }
}

/// What a request's response is recorded under, kept until the response is ready.
struct Pending {
    metrics: HttpMetrics,
    route: Option<MatchedPath>,
    method: &'static str,
    start: Instant,
}

pin_project_lite::pin_project! {
    /// The response future of [`RecordHttp`]: records the response once it is ready.
    pub(crate) struct RecordFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, ResBody, E> Future for RecordFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Some(pending), Ok(response)) = (this.pending.take(), &result) {
            let route = pending
                .route
                .as_ref()
                .map_or(UNMATCHED, MatchedPath::as_str);
            pending.metrics.record(
                route,
                pending.method,
                response.status(),
                pending.start.elapsed(),
            );
        }
        Poll::Ready(result)
    }
}

/// The counters of one event bus: what its outbox relay published, and what each of its
/// listeners consumed. Cheap to clone; every slot is created before the first event.
#[derive(Clone, Default)]
pub(crate) struct EventMetrics {
    inner: Arc<EventCounters>,
}

#[derive(Default)]
struct EventCounters {
    /// Indexed by `Subject as usize`.
    published: [AtomicU64; Subject::ALL.len()],
    publish_failures: [AtomicU64; Subject::ALL.len()],
    consumers: Mutex<Vec<Arc<ConsumerCounters>>>,
}

impl fmt::Debug for EventMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventMetrics").finish_non_exhaustive()
    }
}

impl EventMetrics {
    /// JetStream acknowledged an event on `subject` (a duplicate it dropped counts too: the
    /// relay's work is done).
    pub(crate) fn published(&self, subject: Subject) {
        self.inner.published[subject as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Sending an event on `subject`, or its acknowledgement, failed; it stays in the outbox.
    pub(crate) fn publish_failed(&self, subject: Subject) {
        self.inner.publish_failures[subject as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of durable consumer `name`, created on first use and shared after.
    pub(crate) fn consumer(&self, name: &str) -> Arc<ConsumerCounters> {
        let mut consumers = self
            .inner
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(counters) = consumers.iter().find(|c| c.name == name) {
            return Arc::clone(counters);
        }
        let counters = Arc::new(ConsumerCounters {
            name: name.to_owned(),
            ..ConsumerCounters::default()
        });
        consumers.push(Arc::clone(&counters));
        counters
    }

    /// (subject, published, failed) for the subjects published or tried: only what this service
    /// publishes, not every subject of the catalog.
    fn subjects(&self) -> Vec<(Subject, u64, u64)> {
        Subject::ALL
            .into_iter()
            .map(|subject| {
                let i = subject as usize;
                let published = self.inner.published[i].load(Ordering::Relaxed);
                let failed = self.inner.publish_failures[i].load(Ordering::Relaxed);
                (subject, published, failed)
            })
            .filter(|&(_, published, failed)| published + failed > 0)
            .collect()
    }

    fn consumers(&self) -> Vec<Arc<ConsumerCounters>> {
        self.inner
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What one durable consumer did with its deliveries.
#[derive(Debug, Default)]
pub(crate) struct ConsumerCounters {
    name: String,
    consumed: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

impl ConsumerCounters {
    /// A message was delivered to the listener.
    pub(crate) fn consumed(&self) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }

    /// It was handled (or was a duplicate) and acknowledged.
    pub(crate) fn acked(&self) {
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    /// It was negatively acknowledged, to be redelivered after a delay.
    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// It was copied to the dead-letter stream and terminated.
    pub(crate) fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self, pending: Option<(u64, u64)>) -> ConsumerSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConsumerSnapshot {
            name: self.name.clone(),
            consumed: load(&self.consumed),
            acked: load(&self.acked),
            retried: load(&self.retried),
            dead_lettered: load(&self.dead_lettered),
            pending,
        }
    }
}

/// What `/metrics` reports about one service besides HTTP: its event bus's counters and, read
/// at each scrape, its outbox backlog and its consumers' pending counts. Filled by
/// [`Service::with_outbox`](crate::server::Service::with_outbox) and
/// [`Service::with_listener`](crate::server::Service::with_listener).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceMetrics {
    bus: Option<EventBus>,
    outbox: Option<Outbox>,
}

impl ServiceMetrics {
    /// Reports `bus`'s counters and its consumers' pending counts.
    pub(crate) fn watch_bus(&mut self, bus: &EventBus) {
        self.bus.get_or_insert_with(|| bus.clone());
    }

    /// Reports `outbox`'s backlog.
    pub(crate) fn watch_outbox(&mut self, outbox: &Outbox) {
        self.outbox = Some(outbox.clone());
    }

    /// The values of this service, reading the scrape-time ones concurrently, each bounded by
    /// [`SCRAPE_TIMEOUT`].
    async fn snapshot(&self, service: &'static str) -> ServiceSnapshot {
        let events = self.bus.as_ref().map(EventBus::metrics);
        let consumers = events.map(EventMetrics::consumers).unwrap_or_default();
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
                &consumer.name,
                consumer_pending(bus, &consumer.name),
            )
            .await
        }));
        let (outbox_pending, pending) = tokio::join!(outbox, pending);
        ServiceSnapshot {
            service,
            subjects: events.map(EventMetrics::subjects).unwrap_or_default(),
            consumers: consumers
                .iter()
                .zip(pending)
                .map(|(counters, pending)| counters.snapshot(pending))
                .collect(),
            outbox_pending,
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

/// What a server's `/metrics` reads: its HTTP series and each of its services.
struct Sources {
    http: HttpMetrics,
    services: Vec<(&'static str, ServiceMetrics)>,
}

/// The `/metrics` route of a server serving `services`, whose requests `http` records.
pub(crate) fn router(http: HttpMetrics, services: Vec<(&'static str, ServiceMetrics)>) -> Router {
    Router::new()
        .route(PATH, get(scrape))
        .with_state(Arc::new(Sources { http, services }))
}

async fn scrape(
    State(sources): State<Arc<Sources>>,
    headers: HeaderMap,
) -> axum::response::Response {
    if headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED) {
        // Through the ingress: as if there were no such route.
        return ApiError::NotFound.into_response();
    }
    let services = join_all(
        sources
            .services
            .iter()
            .map(|(name, metrics)| metrics.snapshot(name)),
    )
    .await;
    let exposition = Exposition {
        http: sources.http.snapshot(),
        services,
    };
    match exposition.encode_text() {
        Ok(body) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(error) => ApiError::Internal(error).into_response(),
    }
}

/// One scrape's values, encoded by `prometheus-client` as one [`Collector`] so that each metric
/// has one `# HELP`/`# TYPE` header followed by the series of every service.
#[derive(Debug)]
struct Exposition {
    http: Vec<RequestSnapshot>,
    services: Vec<ServiceSnapshot>,
}

#[derive(Debug)]
struct RequestSnapshot {
    route: String,
    method: &'static str,
    status: StatusCode,
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
}

impl RequestSnapshot {
    fn labels(&self) -> [(&'static str, &str); 3] {
        [
            ("route", &self.route),
            ("method", self.method),
            ("status", self.status.as_str()),
        ]
    }

    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[derive(Debug)]
struct ServiceSnapshot {
    service: &'static str,
    /// (subject, published, failed) for the subjects this service published or tried to.
    subjects: Vec<(Subject, u64, u64)>,
    consumers: Vec<ConsumerSnapshot>,
    /// `None` without an outbox, or when it could not be read in time.
    outbox_pending: Option<u64>,
}

#[derive(Debug)]
struct ConsumerSnapshot {
    name: String,
    consumed: u64,
    acked: u64,
    retried: u64,
    dead_lettered: u64,
    /// (`num_pending`, `num_ack_pending`), when JetStream answered in time.
    pending: Option<(u64, u64)>,
}

impl ConsumerSnapshot {
    fn labels(&self, service: &'static str) -> [(&'static str, &str); 2] {
        [("service", service), ("consumer", &self.name)]
    }
}

impl Exposition {
    fn encode_text(self) -> anyhow::Result<String> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut body = String::new();
        prometheus_text::encode(&mut body, &registry)
            .map_err(|_| anyhow::anyhow!("encode metrics"))?;
        Ok(body)
    }

    fn subjects(&self) -> impl Iterator<Item = (&'static str, Subject, u64, u64)> {
        self.services.iter().flat_map(|s| {
            s.subjects
                .iter()
                .map(|&(subject, published, failed)| (s.service, subject, published, failed))
        })
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
            "http_requests",
            "HTTP responses by route template (unmatched: no route), method and status.",
            self.http
                .iter()
                .map(|r| (r.labels(), ConstCounter::new(r.count()))),
        )?;
        {
            let mut family = e.encode_descriptor(
                "http_request_duration",
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
        let subject = |(service, subject, _, _): (&'static str, Subject, u64, u64)| {
            [("service", service), ("subject", subject.name())]
        };
        family(
            e,
            "events_published",
            "Events the outbox relay published and JetStream acknowledged, by subject.",
            self.subjects()
                .map(|s| (subject(s), ConstCounter::new(s.2))),
        )?;
        family(
            e,
            "events_publish_failures",
            "Publishes or acks that failed (the event stays in the outbox), by subject.",
            self.subjects()
                .map(|s| (subject(s), ConstCounter::new(s.3))),
        )?;
        let per_consumer: [(&str, &str, CounterOf<ConsumerSnapshot>); 4] = [
            (
                "events_consumed",
                "Messages delivered to the listener of a durable consumer.",
                |c| c.consumed,
            ),
            (
                "events_acked",
                "Messages handled, or recognised as already applied, and acknowledged.",
                |c| c.acked,
            ),
            (
                "events_retried",
                "Messages negatively acknowledged, to be redelivered after a delay.",
                |c| c.retried,
            ),
            (
                "events_dead_lettered",
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
                    .map(|(s, c)| (c.labels(s), ConstCounter::new(value(c)))),
            )?;
        }
        family(
            e,
            "events_outbox_pending",
            "Events committed in the outbox and not yet published, read from MongoDB.",
            self.services.iter().filter_map(|s| {
                let pending = s.outbox_pending?;
                Some(([("service", s.service)], ConstGauge::new(pending)))
            }),
        )?;
        family(
            e,
            "events_consumer_pending",
            "Messages not yet delivered to a durable consumer, read from JetStream.",
            self.consumers().filter_map(|(s, c)| {
                let (pending, _) = c.pending?;
                Some((c.labels(s), ConstGauge::new(pending)))
            }),
        )?;
        family(
            e,
            "events_consumer_ack_pending",
            "Messages delivered to a durable consumer and not yet acked, read from JetStream.",
            self.consumers().filter_map(|(s, c)| {
                let (_, ack_pending) = c.pending?;
                Some((c.labels(s), ConstGauge::new(ack_pending)))
            }),
        )?;
        Ok(())
    }
}

/// Reads one counter of a snapshot.
type CounterOf<T> = fn(&T) -> u64;

/// Writes one metric's header and then each of its series.
fn family<'a, const N: usize, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = ([(&'static str, &'a str); N], M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::HttpSecurity;
    use axum::body::Body;
    use tower::ServiceExt as _;

    /// A server's router as `Server` composes it: routes, the `/metrics` route, the common
    /// layers, and the metrics layer outermost.
    fn app(http: &HttpMetrics, services: Vec<(&'static str, ServiceMetrics)>) -> Router {
        let routes = Router::new()
            .route(
                "/api/things/{id}",
                get(|| async { "thing" }).put(|| async { StatusCode::NO_CONTENT }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }),
            )
            .merge(router(http.clone(), services))
            .fallback(crate::json::not_found);
        crate::server::with_common_layers(routes, &HttpSecurity::default()).layer(http.layer())
    }

    async fn send(app: &Router, method: &str, path: &str) -> axum::response::Response {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap()
    }

    async fn scrape(app: &Router) -> String {
        let response = send(app, "GET", PATH).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// The value of the sample whose name and labels are exactly `series`.
    fn sample(body: &str, series: &str) -> Option<f64> {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    #[tokio::test]
    async fn requests_are_counted_and_timed_by_route_template_method_and_status() {
        let http = HttpMetrics::default();
        let app = app(&http, Vec::new());
        for path in ["/api/things/1", "/api/things/2", "/api/things/3"] {
            assert_eq!(send(&app, "GET", path).await.status(), StatusCode::OK);
        }
        send(&app, "PUT", "/api/things/1").await;
        send(&app, "DELETE", "/api/things/1").await;
        send(&app, "GET", "/no/such/path").await;
        send(&app, "BREW", "/api/things/1").await;
        send(&app, "GET", "/slow").await;
        let body = scrape(&app).await;

        let get = r#"{route="/api/things/{id}",method="GET",status="200"}"#;
        assert_eq!(
            sample(&body, &format!("http_requests_total{get}")),
            Some(3.0)
        );
        assert_eq!(
            sample(&body, &format!("http_request_duration_seconds_count{get}")),
            Some(3.0)
        );
        let put = r#"{route="/api/things/{id}",method="PUT",status="204"}"#;
        assert_eq!(
            sample(&body, &format!("http_requests_total{put}")),
            Some(1.0)
        );
        let not_allowed = r#"{route="/api/things/{id}",method="DELETE",status="405"}"#;
        assert_eq!(
            sample(&body, &format!("http_requests_total{not_allowed}")),
            Some(1.0)
        );
        let unmatched = r#"{route="unmatched",method="GET",status="404"}"#;
        assert_eq!(
            sample(&body, &format!("http_requests_total{unmatched}")),
            Some(1.0)
        );
        let other = r#"{route="/api/things/{id}",method="other",status="405"}"#;
        assert_eq!(
            sample(&body, &format!("http_requests_total{other}")),
            Some(1.0)
        );
        assert!(!body.contains("/no/such/path"), "{body}");
        assert!(!body.contains("BREW"), "{body}");

        // 30 ms lands above the 25 ms bound and within the 50 ms one; the sum is the time.
        let slow = |le: &str| {
            format!(
                r#"http_request_duration_seconds_bucket{{route="/slow",method="GET",status="200",le="{le}"}}"#
            )
        };
        assert_eq!(sample(&body, &slow("0.025")), Some(0.0), "{body}");
        assert_eq!(sample(&body, &slow("0.05")), Some(1.0), "{body}");
        assert_eq!(sample(&body, &slow("+Inf")), Some(1.0), "{body}");
        let sum = sample(
            &body,
            r#"http_request_duration_seconds_sum{route="/slow",method="GET",status="200"}"#,
        )
        .unwrap();
        assert!((0.03..1.0).contains(&sum), "{sum}");
    }

    #[tokio::test]
    async fn the_metrics_route_is_not_counted_and_refuses_proxied_requests() {
        let http = HttpMetrics::default();
        let app = app(&http, Vec::new());
        scrape(&app).await;
        let body = scrape(&app).await;
        assert!(!body.contains(r#"route="/metrics""#), "{body}");
        assert!(
            body.contains("# TYPE http_requests_total counter"),
            "{body}"
        );

        for forwarded in ["x-forwarded-for", "forwarded"] {
            let request = Request::get(PATH)
                .header(forwarded, "for=203.0.113.9")
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{forwarded}");
        }
    }

    #[test]
    fn latency_buckets_are_upper_bounds() {
        let http = HttpMetrics::default();
        for millis in [0.5, 0.6, 5_000.0, 6_000.0] {
            http.record(
                "/r",
                "GET",
                StatusCode::OK,
                Duration::from_secs_f64(millis / 1000.0),
            );
        }
        let snapshot = http.snapshot();
        let buckets = snapshot[0].buckets;
        assert_eq!(buckets[0], 1, "0.5 ms is within le=0.0005");
        assert_eq!(buckets[1], 1, "0.6 ms is within le=0.001");
        assert_eq!(buckets[LATENCY_BUCKETS.len() - 1], 1, "5 s is within le=5");
        assert_eq!(buckets[LATENCY_BUCKETS.len()], 1, "6 s is only within +Inf");
        assert_eq!(snapshot[0].count(), 4);
    }

    #[test]
    fn subjects_index_their_counters() {
        for (i, subject) in Subject::ALL.into_iter().enumerate() {
            assert_eq!(subject as usize, i);
        }
    }

    #[test]
    fn the_events_of_every_service_share_one_header_and_carry_their_service() {
        let tickets = EventMetrics::default();
        tickets.published(Subject::TicketCreated);
        tickets.published(Subject::TicketCreated);
        tickets.publish_failed(Subject::TicketUpdated);
        let reserve = tickets.consumer("tickets-order-created");
        reserve.consumed();
        reserve.acked();
        let orders = EventMetrics::default();
        orders.published(Subject::OrderCreated);
        let replica = orders.consumer("orders-ticket-created");
        for _ in 0..3 {
            replica.consumed();
        }
        replica.retried();
        replica.acked();
        replica.dead_lettered();
        assert!(Arc::ptr_eq(
            &replica,
            &orders.consumer("orders-ticket-created")
        ));

        // As `ServiceMetrics::snapshot` takes them, with the scrape-time values given.
        let snapshot = |service, events: &EventMetrics, outbox_pending, pending| ServiceSnapshot {
            service,
            subjects: events.subjects(),
            consumers: events
                .consumers()
                .iter()
                .map(|c| c.snapshot(pending))
                .collect(),
            outbox_pending,
        };
        let body = Exposition {
            http: Vec::new(),
            services: vec![
                snapshot("tickets", &tickets, Some(4), Some((2, 1))),
                snapshot("orders", &orders, None, None),
            ],
        }
        .encode_text()
        .unwrap();

        for name in [
            "events_published_total",
            "events_consumed_total",
            "events_outbox_pending",
            "events_consumer_pending",
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
