//! Composes services into one HTTP server: routes, health, metrics, error-shaped fallbacks,
//! limits, security headers and CORS, tracing, and graceful shutdown shared with background tasks.
//!
//! A per-service binary serves one [`Service`]; the all-in-one launcher serves all of them on
//! one port. Both go through [`Server`], so they behave the same, and both build a service the
//! same way ([`Launch`]).

mod config;
mod detached;
mod launch;
mod layers;
mod service;

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{HttpConfig, ServiceConfig};
pub use launch::{Backend, HEALTHCHECK, Launch, run};
pub use layers::with_common_layers;
pub use service::Service;

use crate::health;
use crate::metrics::{self, HttpMetrics};
use crate::security::HttpSecurity;
use crate::task::BackgroundTask;

/// Largest request body any endpoint accepts; larger ones get 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Requests one service handles at once; more wait their turn in a fair queue that a client
/// leaves cleanly by hanging up. Kept below the MongoDB pool size
/// ([`crate::mongo::POOL_SIZE`]) so that requests rarely queue inside the driver.
pub const MAX_IN_FLIGHT: usize = 64;

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
                        .layer(axum::middleware::from_fn(detached::detached)),
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
            None => router.fallback(crate::error::not_found),
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
