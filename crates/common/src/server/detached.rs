//! `detached`: a request runs to its end even when its client hangs up halfway.

use futures::future::BoxFuture;

/// Runs the rest of the request to its end even when the client hangs up halfway: polled in
/// place while the connection waits for it, and handed to a task of its own only if dropped
/// unfinished. A request waiting for its turn (`admission.rs`) still leaves at once.
///
/// Why: the MongoDB driver hands a freed connection to the next waiter only, and when that
/// waiter was abandoned (its future dropped) the connection goes back unused until the pool's
/// next event, so a burst of abandoned requests can starve the pool for minutes. Finished work
/// is also simpler to reason about than a transaction cut off between two steps. Polling in
/// place spares the common case a task, a wake-up of the other worker and a hop back
/// (`docs/performance.md`).
pub(super) async fn detached(
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::{Notify, oneshot};
    use tower::ServiceExt as _;

    use std::time::Duration;

    use axum::Router;
    use axum::http::{Request, StatusCode};

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
