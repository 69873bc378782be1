//! Background tasks: the work a service runs beside its HTTP server (event consumers, the
//! outbox relay, change-stream followers) until the shutdown token is cancelled.

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// Work that runs beside the HTTP server until the token is cancelled; an `Err` takes the
/// process down so that the orchestrator restarts it.
pub type BackgroundTask =
    Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// Builds a [`BackgroundTask`] from an async closure over the shutdown token.
pub fn background<F, Fut>(task: F) -> BackgroundTask
where
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Box::new(move |shutdown| Box::pin(task(shutdown)))
}
