//! Liveness (`/healthz`) and readiness (`/readyz`) endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::{BoxFuture, join_all};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// How long `/readyz` waits for a check; one that takes longer counts as failed, so a probe
/// never hangs on an unreachable dependency (MongoDB's own server selection waits 5 s).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// A named check; `check` is called on every `/readyz` request and fails if it takes
    /// longer than [`CHECK_TIMEOUT`].
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
    let results = join_all(health.checks.iter().map(|c| async {
        // The check runs on its own task and finishes even when we stop waiting: a MongoDB
        // operation abandoned while it waits for a connection stalls the driver's pool (see
        // `server::detached`).
        let check = tokio::spawn(tracing::Instrument::in_current_span((c.check)()));
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(anyhow::anyhow!("check failed: {join_error}")),
            Err(_) => Err(anyhow::anyhow!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }))
    .await;
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn readyz_status(checks: Vec<ReadinessCheck>) -> (StatusCode, Value) {
        let response = router(checks, CancellationToken::new())
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn ready_when_every_check_answers() {
        let checks = vec![ReadinessCheck::new("db", || async { Ok(()) })];
        let (status, body) = readyz_status(checks).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["checks"]["db"], "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_never_answers_is_not_ready_after_the_timeout() {
        let checks = vec![
            ReadinessCheck::new("db", futures::future::pending),
            ReadinessCheck::new("bus", || async { Ok(()) }),
        ];
        let started = tokio::time::Instant::now();
        let (status, body) = readyz_status(checks).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), CHECK_TIMEOUT);
        assert_eq!(body["checks"]["db"], "no answer within 2s");
        assert_eq!(body["checks"]["bus"], "ok");
    }
}
