//! Liveness (`/healthz`) and readiness (`/readyz`) endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::{BoxFuture, join_all};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

type CheckFn = dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync;

/// One dependency that must answer for the service to take traffic.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: String,
    check: Arc<CheckFn>,
}

impl std::fmt::Debug for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessCheck")
            .field("name", &self.name)
            .finish()
    }
}

impl ReadinessCheck {
    /// A named check; `check` is called on every `/readyz` request.
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// Readiness of a MongoDB database: it answers `ping`.
    pub fn mongo(name: impl Into<String>, db: mongodb::Database) -> Self {
        Self::new(name, move || {
            let db = db.clone();
            async move { crate::mongo::ping(&db).await }
        })
    }
}

#[derive(Clone)]
struct Health {
    checks: Arc<[ReadinessCheck]>,
    shutdown: CancellationToken,
}

/// `/healthz` answers 200 while the process serves; `/readyz` answers 200 only while every
/// check passes and the process is not shutting down, so that load balancers drain it first.
pub fn router(checks: Vec<ReadinessCheck>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(Health {
            checks: checks.into(),
            shutdown,
        })
}

async fn readyz(State(health): State<Health>) -> Response {
    let results = join_all(health.checks.iter().map(|c| (c.check)())).await;
    let mut ready = !health.shutdown.is_cancelled();
    let mut detail = Map::new();
    for (check, result) in health.checks.iter().zip(results) {
        let status = match result {
            Ok(()) => "ok".to_owned(),
            Err(error) => {
                ready = false;
                format!("{error:#}")
            }
        };
        detail.insert(check.name.clone(), Value::String(status));
    }
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (status, Json(json!({"status": word, "checks": detail}))).into_response()
}
