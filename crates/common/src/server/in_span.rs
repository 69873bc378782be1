//! A request's future inside its span: entered on every poll, and on the drop of work left
//! unfinished, like `tracing::Instrumented`; but finished work is dropped at once, inside the
//! poll that finished it, so that the span is not entered once more only to drop it. Each entry
//! costs a lookup of the span per layer of the subscriber (`docs/performance.md`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project_lite::pin_project! {
    /// See the module's documentation.
    pub(super) struct InSpan<F> {
        #[pin]
        work: Option<F>,
        span: tracing::Span,
    }

    impl<F> PinnedDrop for InSpan<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.work.is_some() {
                // Unfinished work may go on elsewhere (`detached`): it takes the span along.
                let _entered = this.span.enter();
                this.work.set(None);
            }
        }
    }
}

impl<F> InSpan<F> {
    pub(super) fn new(work: F, span: tracing::Span) -> Self {
        Self {
            work: Some(work),
            span,
        }
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        // Polled again after it finished: never by hyper, which drops an answered future.
        let Some(work) = this.work.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let output = ready!(work.poll(cx));
        this.work.set(None);
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Counts how often any span is entered.
    struct Entries(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Entries {
        fn on_enter(&self, _: &tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells, when dropped, the name of the span it was dropped in.
    struct DroppedIn(Option<tokio::sync::oneshot::Sender<Option<&'static str>>>);

    impl Drop for DroppedIn {
        fn drop(&mut self) {
            let span = tracing::Span::current().metadata().map(|m| m.name());
            if let Some(tell) = self.0.take() {
                let _ = tell.send(span);
            }
        }
    }

    fn subscriber() -> (impl tracing::Subscriber, Arc<AtomicUsize>) {
        let entries = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Entries(Arc::clone(&entries)));
        (subscriber, entries)
    }

    /// `work` in a span named `request`, and what tells the span it was dropped in.
    fn in_request_span<F: Future>(
        work: F,
    ) -> (
        InSpan<impl Future<Output = F::Output>>,
        tokio::sync::oneshot::Receiver<Option<&'static str>>,
    ) {
        let (tell, told) = tokio::sync::oneshot::channel();
        let dropped = DroppedIn(Some(tell));
        let work = async move {
            let _dropped = dropped;
            work.await
        };
        (InSpan::new(work, tracing::info_span!("request")), told)
    }

    #[tokio::test]
    async fn work_runs_and_is_dropped_in_its_span_which_is_entered_once_per_poll() {
        let (subscriber, entries) = subscriber();
        let _default = tracing::subscriber::set_default(subscriber);
        let (work, told) =
            in_request_span(async { tracing::Span::current().metadata().map(|m| m.name()) });
        let mut work = Box::pin(work);
        let ran_in = std::future::poll_fn(|cx| work.as_mut().poll(cx)).await;
        assert_eq!(ran_in, Some("request"));
        assert_eq!(
            told.await.unwrap(),
            Some("request"),
            "dropped outside its span"
        );
        drop(work);
        assert_eq!(
            entries.load(Ordering::Relaxed),
            1,
            "the span was entered again after the work finished"
        );
    }

    #[tokio::test]
    async fn unfinished_work_is_dropped_in_its_span() {
        let (subscriber, _entries) = subscriber();
        let _default = tracing::subscriber::set_default(subscriber);
        let (work, told) = in_request_span(std::future::pending::<()>());
        let mut work = Box::pin(work);
        let waker = futures::task::noop_waker();
        assert!(
            work.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(work);
        assert_eq!(
            told.await.unwrap(),
            Some("request"),
            "dropped outside its span"
        );
    }
}
