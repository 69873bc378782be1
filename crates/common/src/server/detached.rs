//! `detached`: a request runs to its end even when its client hangs up halfway, and a panic
//! in it is answered 500.

use std::panic::AssertUnwindSafe;

use axum::http::StatusCode;
use futures::FutureExt as _;
use futures::future::BoxFuture;

/// Runs `work` (the rest of the request) to its end even when the client hangs up halfway:
/// polled in place while the connection waits for it, and handed to a task of its own only if
/// dropped unfinished. A panic in it is caught here and answered 500, so that the work is
/// finished either way (a task is never handed a future that panicked).
///
/// Why: the MongoDB driver hands a freed connection to the next waiter only, and when that
/// waiter was abandoned (its future dropped) the connection goes back unused until the pool's
/// next event, so a burst of abandoned requests can starve the pool for minutes. Finished work
/// is also simpler to reason about than a transaction cut off between two steps. Polling in
/// place spares the common case a task, a wake-up of the other worker and a hop back
/// (`docs/performance.md`).
pub(super) fn run_to_end<F>(work: F) -> impl Future<Output = axum::response::Response>
where
    F: Future<Output = axum::response::Response> + Send + 'static,
{
    let work = AssertUnwindSafe(work).catch_unwind().map(|finished| {
        finished.unwrap_or_else(|_panic| {
            tracing::error!("handler panicked");
            crate::error::error_response(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong")
        })
    });
    FinishOnDrop(Some(Box::pin(work)))
}

/// A request's remaining work; dropped unfinished, it goes on in a task of its own.
struct FinishOnDrop(Option<BoxFuture<'static, axum::response::Response>>);

impl std::future::Future for FinishOnDrop {
    type Output = axum::response::Response;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // Polled again after it finished: never by the envelope that awaits it once.
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
            use tracing::Instrument as _;
            tracing::debug!("client gone; the request finishes on its own task");
            // Polled in place, the work runs inside the request's span, which the envelope
            // enters; it is dropped inside that span too, so the span goes with it to the task
            // (taken only here: instrumenting every request cost an enter and exit per poll).
            runtime.spawn(
                async move {
                    drop(work.await);
                }
                .instrument(tracing::Span::current()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;
    use tokio::sync::{Notify, oneshot};

    use super::*;

    #[tokio::test]
    async fn work_its_client_abandons_still_runs_to_its_end_in_its_span() {
        use tracing::Instrument as _;
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (finished, finished_rx) = oneshot::channel::<Option<&'static str>>();
        let finished = Arc::new(Mutex::new(Some(finished)));
        let work = {
            let (started, release) = (started.clone(), release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                if let Some(finished) = finished.lock().unwrap().take() {
                    let span = tracing::Span::current().metadata().map(|m| m.name());
                    let _ = finished.send(span);
                }
                StatusCode::NO_CONTENT.into_response()
            }
        };
        // As the envelope runs it: inside the request's span.
        let request = run_to_end(work).instrument(tracing::info_span!("request"));

        // The client hangs up once the work is underway: its future is dropped here.
        tokio::select! {
            response = request => panic!("answered before the work was released: {response:?}"),
            () = started.notified() => {}
        }
        release.notify_one();

        let span = tokio::time::timeout(Duration::from_secs(5), finished_rx)
            .await
            .expect("the abandoned work did not run to its end within 5 s")
            .expect("the work was dropped before its end");
        assert_eq!(span, Some("request"), "the work left the request's span");
    }

    #[tokio::test]
    async fn a_panic_is_answered_500_in_the_error_shape() {
        let response = run_to_end(async {
            if std::hint::black_box(true) {
                panic!("a handler's bug");
            }
            StatusCode::NO_CONTENT.into_response()
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["errors"][0]["message"], "Something went wrong",
            "{body}"
        );
    }
}
