//! Composes services into one HTTP server: routes, health, metrics, error-shaped fallbacks,
//! limits, security headers and CORS, tracing, and graceful shutdown shared with background tasks.
//!
//! A per-service binary serves one [`Service`]; the all-in-one launcher serves all of them on
//! one port. Both go through [`Server`], so they behave the same, and both build a service the
//! same way ([`Launch`]).

mod accept;
mod admission;
mod bounds;
mod config;
mod detached;
mod envelope;
mod in_span;
mod launch;
mod layers;
mod limits;
mod service;
mod shared;
mod timer;

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{HttpConfig, ServiceConfig};
pub use launch::{Backend, HEALTHCHECK, Launch, run};
pub use limits::Limits;
pub use service::Service;
pub use shared::Shared;

use crate::health;
use crate::metrics::{self, HttpMetrics};
use crate::security::HttpSecurity;
use crate::task::BackgroundTask;
use layers::Layers;

/// Largest request body any endpoint accepts; larger ones get 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// A bound HTTP server for one or more services.
pub struct Server {
    listener: TcpListener,
    services: Vec<Service>,
    security: HttpSecurity,
    limits: Limits,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) for the services.
    ///
    /// `shutdown` stops the server and its background tasks; `/readyz` turns 503 as soon as
    /// it is cancelled so traffic drains before the process exits. Browser protections and
    /// limits are the defaults until [`Server::with_http`] sets the configured ones.
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
        let fallbacks = services.iter().filter(|s| s.fallback.is_some()).count();
        anyhow::ensure!(fallbacks <= 1, "two services bring a fallback");
        Ok(Self {
            listener,
            services,
            security: HttpSecurity::default(),
            limits: Limits::default(),
            shutdown,
        })
    }

    /// Serves with these browser protections (`CORS_ALLOWED_ORIGINS`, HSTS) and limits
    /// instead of the defaults.
    #[must_use]
    pub fn with_http(mut self, http: &HttpConfig) -> Self {
        self.security = http.security.clone();
        self.limits = http.limits;
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
            services,
            security,
            limits,
            shutdown,
        } = self;
        let layers = Layers::new(&security, &limits, HttpMetrics::default());
        let (router, tasks) = compose(services, &layers, &limits, &shutdown);
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
        tracing::info!(%addr, ?limits, "listening");
        accept::serve(listener, router, &limits, shutdown.clone()).await;
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
        failed.map_or(Ok(()), Err)
    }
}

/// The services' routes, each service's behind its own admission (slots and queue), with
/// `/healthz`, `/readyz`, `/metrics` and the fallback; every route in the common layers.
fn compose(
    services: Vec<Service>,
    layers: &Layers,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> (Router, Vec<(String, BackgroundTask)>) {
    let mut router = Router::new();
    let mut checks = Vec::new();
    let mut tasks = Vec::new();
    let mut fallback = None;
    let mut watched = Vec::new();
    for service in services {
        if let Some(own) = service.fallback {
            fallback = Some(own);
        }
        let admission = admission::Admission::new(limits);
        checks.push(admission.readiness_check(service.name));
        router = router.merge(layers.around(service.router, Some(admission)));
        watched.push((service.name, service.metrics));
        checks.extend(service.checks);
        tasks.extend(
            service
                .tasks
                .into_iter()
                .map(|(name, task)| (format!("{}/{name}", service.name), task)),
        );
    }
    // The server's own routes take no turn: health and metrics answer under any load.
    let own = health::router(checks, shutdown.clone())
        .merge(metrics::router(layers.metrics().clone(), watched));
    let own = match fallback {
        Some(fallback) => own.fallback_service(fallback),
        None => own.fallback(crate::error::not_found),
    };
    (router.merge(layers.around(own, None)), tasks)
}
