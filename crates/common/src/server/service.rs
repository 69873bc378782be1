//! `Service`: what one service contributes to a server — routes, readiness checks, background
//! tasks, and the event sources `/metrics` reads.

use axum::Router;

use crate::events::{Event, EventBus, Handler, Listener, Outbox};
use crate::health::ReadinessCheck;
use crate::metrics::{ServiceMetrics, WorkMetrics};
use crate::task::BackgroundTask;

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
    pub(super) metrics: ServiceMetrics,
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

    /// Reports on `/metrics` what the service's background work did and how much waits.
    #[must_use]
    pub fn with_work(mut self, work: &WorkMetrics) -> Self {
        self.metrics.watch_work(work);
        self
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
