//! Failed sign-ins per account: after its allowance of failures an account is refused (429)
//! before its password is even checked, from any address, until a failure is forgiven — so
//! guessing one user's password from many addresses is as slow as from one.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::CLEANUP_EVERY;

/// How many failures an account may have: a burst, then a sustained rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failures forgiven per minute.
    pub per_minute: NonZeroU32,
    /// Failures in a row before the account is refused.
    pub burst: NonZeroU32,
}

/// The failures of every account, each a level that grows by one per failure and drains at
/// `per_minute`. Cheap to clone.
#[derive(Clone)]
pub struct AccountFailures(Arc<Inner>);

struct Inner {
    limit: FailureLimit,
    levels: Mutex<HashMap<String, Level>>,
    failures: AtomicU64,
}

/// Unforgiven failures as of a moment.
#[derive(Debug, Clone, Copy)]
struct Level {
    failures: f64,
    at: Instant,
}

impl std::fmt::Debug for AccountFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keyed by email: not for logs.
        f.debug_tuple("AccountFailures")
            .field(&self.0.limit)
            .finish()
    }
}

impl AccountFailures {
    /// Each account allowed `limit.burst` failures, forgiven at `limit.per_minute`.
    pub fn new(limit: FailureLimit) -> Self {
        Self(Arc::new(Inner {
            limit,
            levels: Mutex::default(),
            failures: AtomicU64::new(0),
        }))
    }

    fn levels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Level>> {
        self.0.levels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Failures forgiven per second.
    fn drain(&self) -> f64 {
        f64::from(self.0.limit.per_minute.get()) / 60.0
    }

    /// `level` as of `now`.
    fn drained(&self, level: Level, now: Instant) -> f64 {
        let forgiven = now.duration_since(level.at).as_secs_f64() * self.drain();
        (level.failures - forgiven).max(0.0)
    }

    /// Whether `account` may try now; how long until it may when it failed too often.
    pub fn admit(&self, account: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Some(level) = self.levels().get(account).copied() else {
            return Ok(());
        };
        let over = self.drained(level, now) - (f64::from(self.0.limit.burst.get()) - 1.0);
        if over > 0.0 {
            Err(Duration::from_secs_f64(over / self.drain()))
        } else {
            Ok(())
        }
    }

    /// `account` failed once more.
    pub fn failed(&self, account: &str) {
        let now = Instant::now();
        let prune =
            self.0.failures.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1;
        let mut levels = self.levels();
        if prune {
            levels.retain(|_, level| self.drained(*level, now) > 0.0);
        }
        let failures = levels
            .get(account)
            .map_or(0.0, |level| self.drained(*level, now));
        levels.insert(
            account.to_owned(),
            Level {
                failures: failures + 1.0,
                at: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_refused_after_its_burst_of_failures_and_others_are_not() {
        let failures = AccountFailures::new(FailureLimit {
            per_minute: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        });
        for _ in 0..3 {
            assert_eq!(failures.admit("a@b.c"), Ok(()));
            failures.failed("a@b.c");
        }
        let wait = failures.admit("a@b.c").unwrap_err();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "one failure is forgiven a minute: {wait:?}"
        );
        assert_eq!(failures.admit("other@b.c"), Ok(()));
    }
}
