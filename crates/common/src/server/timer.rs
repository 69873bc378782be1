//! The HTTP path's two timers, each costing nothing per request unless it is needed: a
//! request's time bound armed only once its work has to wait, and one shared timer per
//! connection for hyper's header-read deadlines.
//!
//! Why: arming a tokio timer takes the runtime's handle and a slot in its wheel, then gives
//! both back, which every request paid twice (`docs/performance.md`).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// `work`, or `None` once `deadline` passes first (see [`within`]).
    pub(super) struct Within<F> {
        #[pin]
        work: F,
        #[pin]
        timer: Option<Sleep>,
        deadline: Instant,
    }
}

/// Like `tokio::time::timeout_at`, but the timer is armed only when `work` is not finished on
/// its first poll: most answers are.
pub(super) fn within<F: Future>(deadline: Instant, work: F) -> Within<F> {
    Within {
        work,
        timer: None,
        deadline,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.work.poll(cx) {
            return Poll::Ready(Some(output));
        }
        if this.timer.is_none() {
            this.timer
                .set(Some(tokio::time::sleep_until(*this.deadline)));
        }
        match this.timer.as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    }
}

/// hyper's timer for one connection. hyper asks for a new deadline for every request head it
/// reads and drops it once the head is in; all of them share one tokio timer here, armed for
/// the earliest and moved on when it fires before the deadline now asked for. A connection's
/// deadlines only move later, so that is once per header timeout, not once per request.
#[derive(Debug, Clone, Default)]
pub(super) struct ConnectionTimer(Arc<Mutex<Option<Pin<Box<Sleep>>>>>);

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(std::time::Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline {
            deadline: deadline.into(),
            shared: Arc::clone(&self.0),
        })
    }
}

/// One deadline of a [`ConnectionTimer`].
struct Deadline {
    deadline: Instant,
    shared: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        // One connection polls its deadlines one at a time: the lock is never contended.
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let timer = shared.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        loop {
            ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= deadline {
                return Poll::Ready(());
            }
            // Fired for an earlier deadline, since given up: on to this one.
            timer.as_mut().reset(deadline);
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::rt::Timer as _;

    use super::*;

    fn fired(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
        let waker = futures::task::noop_waker();
        sleep
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_at_its_time_whatever_the_connection_asked_before() {
        let timer = ConnectionTimer::default();
        let start = Instant::now().into_std();
        // The first request's head came in: its deadline was armed, then dropped.
        let mut first = timer.sleep_until(start + Duration::from_secs(10));
        assert!(!fired(&mut first));
        drop(first);
        tokio::time::advance(Duration::from_secs(4)).await;
        // The next head's deadline is later than the armed one.
        let mut later = timer.sleep_until(start + Duration::from_secs(14));
        assert!(!fired(&mut later));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(
            !fired(&mut later),
            "fired at the dropped deadline (10 s), not its own (14 s)"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(fired(&mut later), "not fired at its deadline");
        // A deadline earlier than the armed one brings it forward.
        let mut long = timer.sleep_until(start + Duration::from_secs(60));
        assert!(!fired(&mut long));
        let mut short = timer.sleep_until(start + Duration::from_secs(15));
        assert!(!fired(&mut short));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            fired(&mut short),
            "an earlier deadline waited for a later one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bound_arms_its_timer_only_for_work_that_waits() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let at_once = std::pin::pin!(within(deadline, async { 7 }));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut at_once = at_once;
        assert_eq!(at_once.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
        assert!(at_once.timer.is_none(), "armed for work done at once");
        let stuck = within(deadline, std::future::pending::<()>()).await;
        assert_eq!(stuck, None, "work past its deadline was not cut off");
        let cut_off = Instant::now();
        assert!(
            cut_off >= deadline && cut_off < deadline + Duration::from_millis(10),
            "cut off {:?} after its deadline",
            cut_off - deadline
        );
    }
}
