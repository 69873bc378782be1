//! When a new schedule wakes the scheduler: only when it is due before the scheduler's next
//! pass, or while a pass is under way (it may have read the schedule before the new one was
//! written). Orders expire minutes ahead, and the next pass is at most a second away, so
//! almost no schedule needs one; each wake costs the schedule's two reads.

use std::sync::atomic::{AtomicI64, Ordering};

use mongodb::bson::DateTime;
use tokio::sync::Notify;

/// `next_pass` while a pass is under way.
const PASSING: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct Wake {
    /// When the scheduler's next pass starts (ms since the epoch), or [`PASSING`].
    next_pass: AtomicI64,
    notify: Notify,
}

impl Default for Wake {
    fn default() -> Self {
        Self {
            next_pass: AtomicI64::new(PASSING),
            notify: Notify::new(),
        }
    }
}

impl Wake {
    /// The scheduler starts a pass: every schedule from now on wakes it for another.
    pub(crate) fn passing(&self) {
        self.next_pass.store(PASSING, Ordering::SeqCst);
    }

    /// The scheduler sleeps until `at`, unless woken.
    pub(crate) fn sleeping_until(&self, at: DateTime) {
        self.next_pass
            .store(at.timestamp_millis(), Ordering::SeqCst);
    }

    /// Expirations were scheduled, the earliest at `earliest` (and written before this call).
    pub(crate) fn scheduled(&self, earliest: DateTime) {
        let next_pass = self.next_pass.load(Ordering::SeqCst);
        if next_pass == PASSING || earliest.timestamp_millis() < next_pass {
            // A wake while the scheduler is not waiting is kept for its next wait.
            self.notify.notify_one();
        }
    }

    /// Until a schedule needs the scheduler.
    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    fn at(millis: i64) -> DateTime {
        DateTime::from_millis(millis)
    }

    fn was_woken(wake: &Wake) -> bool {
        wake.woken().now_or_never().is_some()
    }

    #[test]
    fn only_a_schedule_before_the_next_pass_wakes_a_sleeping_scheduler() {
        let wake = Wake::default();
        wake.sleeping_until(at(10_000));
        wake.scheduled(at(10_000));
        wake.scheduled(at(900_000));
        assert!(!was_woken(&wake), "due at or after the next pass");
        wake.scheduled(at(9_999));
        assert!(was_woken(&wake), "due before the next pass");
        assert!(!was_woken(&wake), "one wake per schedule");
    }

    #[test]
    fn any_schedule_during_a_pass_wakes_the_scheduler_once_it_sleeps() {
        let wake = Wake::default();
        wake.sleeping_until(at(10_000));
        wake.passing();
        wake.scheduled(at(900_000));
        wake.sleeping_until(at(10_000));
        assert!(
            was_woken(&wake),
            "the pass may have read the schedule before it"
        );
    }
}
