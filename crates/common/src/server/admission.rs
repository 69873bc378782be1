//! Admission: at most `max_in_flight` requests of one service run at once; up to `max_queued`
//! wait for their turn, first come first served; beyond that a request is refused at once with
//! 503 and `Retry-After`, so that a flood cannot pile up unbounded work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::response::{IntoResponse as _, Response};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::Limits;
use crate::error::ApiError;
use crate::health::ReadinessCheck;

/// How long a refused client is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One service's slots and its queue.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Semaphore,
    queued: AtomicUsize,
    max_queued: usize,
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            slots: Semaphore::new(limits.max_in_flight),
            queued: AtomicUsize::new(0),
            max_queued: limits.max_queued,
        })
    }

    /// Readiness: the service can take more work (its queue is not full).
    pub(crate) fn readiness_check(self: &Arc<Self>, service: &str) -> ReadinessCheck {
        let this = Arc::clone(self);
        ReadinessCheck::new(format!("{service}-capacity"), move || {
            let full = this.queued.load(Ordering::Relaxed) >= this.max_queued;
            async move {
                anyhow::ensure!(!full, "its queue of requests is full");
                Ok(())
            }
        })
    }

    /// A slot at once, else a place in the queue until one frees, else the 503 that refuses
    /// the request. A request dropped while it waits leaves the queue.
    pub(super) async fn admit(&self) -> Result<SemaphorePermit<'_>, Response> {
        if let Ok(slot) = self.slots.try_acquire() {
            return Ok(slot);
        }
        let waiting = self.queued.fetch_add(1, Ordering::Relaxed);
        let _place = Waiting(&self.queued);
        if waiting >= self.max_queued {
            return Err(overloaded());
        }
        // Never closed; answer as if full rather than panic.
        self.slots.acquire().await.map_err(|_| overloaded())
    }
}

/// Leaves the queue when dropped, also when the client gives up while waiting.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn overloaded() -> Response {
    ApiError::Overloaded {
        retry_after: RETRY_AFTER,
    }
    .into_response()
}
