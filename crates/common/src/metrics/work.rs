//! A service's own background work on `/metrics` (payments' reconciler and refunds): how each
//! piece of work ended, counted as it happens, and how much waits, read when scraped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

/// How many items of each kind of work wait.
pub type Backlog = BoxFuture<'static, anyhow::Result<Vec<(&'static str, u64)>>>;

/// Reads, at scrape time, the [`Backlog`].
pub type BacklogRead = Arc<dyn Fn() -> Backlog + Send + Sync>;

/// Counts of a service's work by `(work, outcome)`, and where its backlog is read. Cheap to
/// clone: clones count into the same map.
#[derive(Clone, Default)]
pub struct WorkMetrics {
    counts: Arc<Mutex<BTreeMap<(&'static str, &'static str), u64>>>,
    backlog: Option<BacklogRead>,
}

impl std::fmt::Debug for WorkMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkMetrics")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl WorkMetrics {
    /// These counts, with `read` giving the backlog at each scrape.
    #[must_use]
    pub fn with_backlog(mut self, read: BacklogRead) -> Self {
        self.backlog = Some(read);
        self
    }

    /// One piece of `work` ended with `outcome`.
    pub fn count(&self, work: &'static str, outcome: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((work, outcome)).or_default() += 1;
    }

    /// Every `(work, outcome, count)` so far.
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.iter().map(|(&(w, o), &n)| (w, o, n)).collect()
    }

    /// How many items of each work wait, if the service reads a backlog.
    pub(super) fn backlog(&self) -> Option<Backlog> {
        self.backlog.as_ref().map(|read| read())
    }
}
