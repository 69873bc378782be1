//! The HTTP layer of `/metrics`: every response counted and timed by route template, method
//! and status, touching only atomics on the hot path.
//!
//! A request finds its series under a shared read lock and adds to two atomics, without
//! allocating; only the first request of a series takes the write lock. The series' histogram
//! count is also the request count (`prometheus-client`'s own `Histogram` locks a mutex per
//! observation, and a counter beside it would cost a second lookup). Series never come from
//! what a client chooses: routes are templates, methods outside the standard ones are `other`.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response, StatusCode};

/// The `route` of requests no route matched (404s), so that probing for paths adds no series.
const UNMATCHED: &str = "unmatched";

/// Upper bounds, in seconds, of the latency buckets: 0.5 ms (a cached read) to 5 s (a stuck
/// dependency), ×2 to ×2.5 apart; slower requests land in `+Inf`.
pub(super) const LATENCY_BUCKETS: [f64; 13] = [
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
    pub(super) fn snapshot(&self) -> Vec<RequestSnapshot> {
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
            Some(route) if route.as_str() == super::PATH => None,
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

/// One series as read at a scrape.
#[derive(Debug)]
pub(super) struct RequestSnapshot {
    route: String,
    method: &'static str,
    status: StatusCode,
    pub(super) buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub(super) sum_seconds: f64,
}

impl RequestSnapshot {
    pub(super) fn labels(&self) -> [(&'static str, &str); 3] {
        [
            ("route", &self.route),
            ("method", self.method),
            ("status", self.status.as_str()),
        ]
    }

    pub(super) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
