//! Composes services into one HTTP server: routes, health, metrics, error-shaped fallbacks,
//! limits, security headers and CORS, tracing, and graceful shutdown shared with background tasks.
//!
//! A per-service binary serves one [`Service`]; the all-in-one launcher serves all of them on
//! one port. Both go through [`Server`], so they behave the same.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, Response, StatusCode};
use axum::serve::ListenerExt as _;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::events::{Event, EventBus, Handler, Listener, Outbox};
use crate::health::{self, ReadinessCheck};
use crate::metrics::{self, HttpMetrics, ServiceMetrics};
use crate::security::HttpSecurity;

/// Largest request body any endpoint accepts; larger ones get 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Requests one service handles at once; more wait their turn in a fair queue that a client
/// leaves cleanly by hanging up. Kept below the MongoDB pool size
/// ([`crate::mongo::POOL_SIZE`]) so that requests rarely queue inside the driver.
pub const MAX_IN_FLIGHT: usize = 64;

/// Work that runs beside the HTTP server (event consumers, relays) until the token is cancelled.
pub type BackgroundTask =
    Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// Everything a service contributes to a server.
pub struct Service {
    /// Short name, used in logs.
    pub name: &'static str,
    /// The service's routes, state already applied (e.g. `/api/users/*`).
    pub router: Router,
    /// What must answer before the service takes traffic.
    pub checks: Vec<ReadinessCheck>,
    /// Tasks to run for as long as the server runs.
    pub tasks: Vec<(String, BackgroundTask)>,
    /// Answers paths no service routes (the browser client's HTML 404); at most one service
    /// of a server may set it. Without one, unknown paths get the JSON 404.
    pub fallback: Option<Router>,
    /// What `/metrics` reads besides HTTP (see [`Service::with_outbox`]).
    metrics: ServiceMetrics,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("checks", &self.checks)
            .field(
                "tasks",
                &self.tasks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service with routes and readiness checks and no background tasks yet.
    pub fn new(name: &'static str, router: Router, checks: Vec<ReadinessCheck>) -> Self {
        Self {
            name,
            router,
            checks,
            tasks: Vec::new(),
            fallback: None,
            metrics: ServiceMetrics::default(),
        }
    }

    /// Routes every path no service claims to `fallback` (a router with its own state
    /// applied, typically one `fallback` handler).
    #[must_use]
    pub fn with_fallback(mut self, fallback: Router) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Adds a background task.
    #[must_use]
    pub fn with_task(mut self, name: impl Into<String>, task: BackgroundTask) -> Self {
        self.tasks.push((name.into(), task));
        self
    }

    /// Runs the outbox's relay on `bus`, and reports on `/metrics` the outbox's backlog and the
    /// bus's event counters.
    #[must_use]
    pub fn with_outbox(mut self, outbox: Outbox, bus: EventBus) -> Self {
        self.metrics.watch_outbox(&outbox);
        self.metrics.watch_bus(&bus);
        self.with_task("outbox-relay", outbox.relay(bus))
    }

    /// Runs `listener` (a task named after its durable consumer), and reports on `/metrics`
    /// what the consumer did and how many messages it has pending.
    #[must_use]
    pub fn with_listener<E: Event, H: Handler<E>>(mut self, listener: Listener<E, H>) -> Self {
        self.metrics.watch_bus(listener.bus());
        let name = listener.consumer_name().to_owned();
        self.with_task(name, listener.task())
    }
}

/// A bound HTTP server for one or more services.
pub struct Server {
    listener: TcpListener,
    router: Router,
    security: HttpSecurity,
    tasks: Vec<(String, BackgroundTask)>,
    shutdown: CancellationToken,
    http_metrics: HttpMetrics,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and composes the services' routes.
    ///
    /// `shutdown` stops the server and its background tasks; `/readyz` turns 503 as soon as
    /// it is cancelled so traffic drains before the process exits. Browser protections are
    /// the strict defaults until [`Server::with_security`] sets the configured ones.
    pub async fn bind(
        addr: SocketAddr,
        services: Vec<Service>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        Self::from_listener(listener, services, shutdown)
    }

    /// Like [`Server::bind`] on a listener bound beforehand, for services that must know the
    /// server's own address when they are built (the client calls the APIs through it).
    ///
    /// # Errors
    /// When two services each bring a fallback.
    pub fn from_listener(
        listener: TcpListener,
        services: Vec<Service>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut router = Router::new();
        let mut checks = Vec::new();
        let mut tasks = Vec::new();
        let mut fallback = None;
        let mut watched = Vec::new();
        for service in services {
            if let Some(own) = service.fallback {
                anyhow::ensure!(fallback.is_none(), "two services bring a fallback");
                fallback = Some(own);
            }
            // One semaphore for all the service's routes (the global layer shares it).
            router = router.merge(
                service.router.layer(
                    tower::ServiceBuilder::new()
                        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                            MAX_IN_FLIGHT,
                        ))
                        .layer(axum::middleware::from_fn(detached)),
                ),
            );
            watched.push((service.name, service.metrics));
            checks.extend(service.checks);
            tasks.extend(
                service
                    .tasks
                    .into_iter()
                    .map(|(name, task)| (format!("{}/{name}", service.name), task)),
            );
        }
        let router = router.merge(health::router(checks, shutdown.clone()));
        let http_metrics = HttpMetrics::default();
        let router = router.merge(metrics::router(http_metrics.clone(), watched));
        let router = match fallback {
            Some(fallback) => router.fallback_service(fallback),
            None => router.fallback(crate::json::not_found),
        };
        Ok(Self {
            listener,
            router,
            security: HttpSecurity::default(),
            tasks,
            shutdown,
            http_metrics,
        })
    }

    /// Serves with these browser protections (`CORS_ALLOWED_ORIGINS`, HSTS) instead of the
    /// strict defaults.
    #[must_use]
    pub fn with_security(mut self, security: HttpSecurity) -> Self {
        self.security = security;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener.local_addr().context("read local address")
    }

    /// The port actually bound (useful after binding port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().map_or(0, |addr| addr.port())
    }

    /// Serves until the shutdown token is cancelled (or a background task fails, which
    /// cancels it), then waits for in-flight requests and tasks to finish.
    ///
    /// Handlers can read the peer's address (`ConnectInfo<SocketAddr>`), which the rate
    /// limits key on.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            security,
            tasks,
            shutdown,
            http_metrics,
        } = self;
        // Outermost, so that it also counts what the common layers answer (a panic's 500, CORS
        // preflights) and times them.
        let router = with_common_layers(router, &security).layer(http_metrics.layer());
        let mut set = JoinSet::new();
        for (name, task) in tasks {
            let token = shutdown.clone();
            let future = task(token.clone());
            set.spawn(async move {
                let result = future.await;
                match &result {
                    Ok(()) if token.is_cancelled() => tracing::info!(task = %name, "task stopped"),
                    Ok(()) => tracing::warn!(task = %name, "task ended on its own"),
                    Err(error) => tracing::error!(task = %name, error = ?error, "task failed"),
                }
                // One failed task takes the process down so the orchestrator restarts it
                // rather than leaving a half-working replica.
                if result.is_err() {
                    token.cancel();
                }
                result
            });
        }
        let addr = listener.local_addr().context("read local address")?;
        tracing::info!(%addr, "listening");
        let listener = listener.tap_io(|stream| {
            // Small JSON responses: don't wait for Nagle.
            let _ = stream.set_nodelay(true);
        });
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serve http");
        shutdown.cancel();
        let mut failed = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Err(error)) => failed = Some(error),
                Err(join_error) => {
                    failed =
                        Some(anyhow::Error::new(join_error).context("background task panicked"))
                }
                Ok(Ok(())) => {}
            }
        }
        served?;
        failed.map_or(Ok(()), Err)
    }
}

/// The layers every server applies, outermost first: request id, tracing span, security
/// headers and CORS (see [`HttpSecurity`]), panic guard, body limit, and the error-shaped 405
/// fallback (the 404 fallback is the server's: JSON, or the client's page).
pub fn with_common_layers(router: Router, security: &HttpSecurity) -> Router {
    // Each `Router::layer` call boxes every route once more (an allocation and a clone per
    // request), so the layers go on in as few calls as possible.
    let router = router
        .method_not_allowed_fallback(crate::json::method_not_allowed)
        .layer(
            tower::ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(
                    |_panic: Box<dyn std::any::Any + Send>| {
                        tracing::error!("handler panicked");
                        crate::error::error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Something went wrong",
                        )
                    },
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        );
    security.apply(router).layer(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(SequentialRequestIds))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<axum::body::Body>| {
                        let request_id = request
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        let span = tracing::info_span!(
                            "request",
                            method = %request.method(),
                            path = %request.uri().path(),
                            request_id,
                            trace_id = tracing::field::Empty,
                        );
                        crate::telemetry::continue_trace(
                            &span,
                            &crate::telemetry::HttpHeaders(request.headers()),
                        );
                        span
                    })
                    .on_response(
                        |response: &Response<axum::body::Body>,
                         latency: Duration,
                         _span: &tracing::Span| {
                            tracing::debug!(
                                status = response.status().as_u16(),
                                latency_us = latency.as_micros() as u64,
                                "response"
                            );
                        },
                    ),
            ),
    )
}

/// Runs the rest of the request to its end even when the client hangs up halfway: polled in
/// place while the connection waits for it, and handed to a task of its own only if dropped
/// unfinished. A request waiting for its turn (`MAX_IN_FLIGHT`) still leaves at once.
///
/// Why: the MongoDB driver (3.9) hands a freed connection to the next waiter only, and when that
/// waiter was abandoned (its future dropped) the connection goes back unused until the pool's
/// next event; a burst of abandoned requests thus left tickets' pool serving about two
/// waiters a second, and the service unresponsive for minutes (`ticketing lag` at 200/s).
/// Finished work is also simpler to reason about than a transaction cut off between two steps.
/// Spawning every request instead cost about a tenth of currentuser's throughput: a task, a
/// wake-up of the other worker, and a hop back for the response.
async fn detached(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    // The request's span (request id, trace) stays with the work if it moves to a task.
    FinishOnDrop(Some(Box::pin(
        next.run(request).instrument(tracing::Span::current()),
    )))
    .await
}

/// A request's remaining work; dropped unfinished, it goes on in a task of its own.
struct FinishOnDrop(Option<BoxFuture<'static, axum::response::Response>>);

impl std::future::Future for FinishOnDrop {
    type Output = axum::response::Response;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // Polled again after it finished: never by the middleware that awaits it once.
        let Some(work) = self.0.as_mut() else {
            return std::task::Poll::Pending;
        };
        let response = std::task::ready!(work.as_mut().poll(cx));
        self.0 = None;
        std::task::Poll::Ready(response)
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let Some(work) = self.0.take() else { return };
        // Without a runtime (it is shutting down) there is nothing left to finish on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::debug!("client gone; the request finishes on its own task");
            runtime.spawn(async move {
                drop(work.await);
            });
        }
    }
}

/// Request ids unique across processes without a random draw per request: a random prefix
/// chosen once per process, then a counter (`3f2a9c1e7b44-1a`).
#[derive(Debug, Clone, Copy, Default)]
struct SequentialRequestIds;

impl MakeRequestId for SequentialRequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let prefix = PREFIX.get_or_init(|| {
            use std::hash::BuildHasher as _;
            // RandomState is seeded from the OS once per process.
            let seed = std::hash::RandomState::new().hash_one(std::process::id());
            format!("{:012x}", seed & 0xffff_ffff_ffff)
        });
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{prefix}-{n:x}"))
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::{Notify, oneshot};
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn a_request_its_client_abandons_still_runs_to_its_end() {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (finished, finished_rx) = oneshot::channel::<()>();
        let finished = Arc::new(Mutex::new(Some(finished)));
        let handler = {
            let (started, release) = (started.clone(), release.clone());
            move || async move {
                started.notify_one();
                release.notified().await;
                if let Some(finished) = finished.lock().unwrap().take() {
                    let _ = finished.send(());
                }
                StatusCode::NO_CONTENT
            }
        };
        let router = Router::new()
            .route("/", axum::routing::post(handler))
            .layer(axum::middleware::from_fn(detached));
        let request = router.oneshot(Request::post("/").body(axum::body::Body::empty()).unwrap());

        // The client hangs up once the handler is underway: its future is dropped here.
        tokio::select! {
            response = request => panic!("answered before the handler was released: {response:?}"),
            () = started.notified() => {}
        }
        release.notify_one();

        tokio::time::timeout(Duration::from_secs(5), finished_rx)
            .await
            .expect("the abandoned request did not run to its end within 5 s")
            .expect("the handler was dropped before its end");
    }
}
