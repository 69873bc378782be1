//! Signed-in writes per user: every `POST`, `PUT`, `PATCH` and `DELETE` of a signed-in user
//! takes one from that user's bucket, so that one account cannot write in a loop (re-ordering
//! every ticket at each expiry, editing one until the event stream fills); 429 + `Retry-After`
//! beyond.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::CLEANUP_EVERY;
use crate::config::{ConfigError, Env};
use crate::error::ApiError;
use crate::session::Sessions;

/// How many writes a user may make: a burst, then a sustained rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimit {
    /// `WRITE_RATE_LIMIT_PER_MINUTE` (default 300): writes per minute in the long run.
    pub per_minute: NonZeroU32,
    /// `WRITE_RATE_LIMIT_BURST` (default 60): writes at once, a busy seller's listing session.
    pub burst: NonZeroU32,
}

impl WriteLimit {
    /// Reads the limit, each part defaulting as documented.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            per_minute: env.parse_or("WRITE_RATE_LIMIT_PER_MINUTE", nonzero(300))?,
            burst: env.parse_or("WRITE_RATE_LIMIT_BURST", nonzero(60))?,
        })
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// One bucket per user. Cheap to clone.
#[derive(Clone)]
pub struct WriteLimiter(Arc<Inner>);

struct Inner {
    buckets: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
    sessions: Sessions,
}

impl std::fmt::Debug for WriteLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLimiter").finish_non_exhaustive()
    }
}

impl WriteLimiter {
    /// Buckets of `limit` for the users whose sessions `sessions` reads.
    pub fn new(limit: WriteLimit, sessions: Sessions) -> Self {
        let quota = Quota::per_minute(limit.per_minute).allow_burst(limit.burst);
        Self(Arc::new(Inner {
            buckets: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
            sessions,
        }))
    }

    /// Takes one write from `user`'s bucket, or says how long until one is available.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        let inner = &self.0;
        if inner.checks.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            inner.buckets.retain_recent();
        }
        inner
            .buckets
            .check_key(&user.to_owned())
            .map_err(|not_until| not_until.wait_time_from(inner.buckets.clock().now()))
    }
}

/// The middleware of the routes it wraps: a write with a valid session counts against its user;
/// reads, and requests without a session (refused later anyway), pass.
pub async fn limit_writes(
    State(limiter): State<WriteLimiter>,
    request: Request,
    next: Next,
) -> Response {
    let write = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if write
        && let Some(claims) = limiter.0.sessions.from_headers(request.headers())
        && let Err(retry_after) = limiter.check(&claims.id)
    {
        tracing::debug!(user_id = %claims.id, "write rate limited");
        return ApiError::TooManyRequests { retry_after }.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionConfig;

    #[test]
    fn a_user_gets_the_burst_then_waits_and_other_users_are_unaffected() {
        let sessions = Sessions::new(&SessionConfig {
            jwt_key: "k".repeat(32),
            ttl: Duration::from_secs(60),
            cookie_secure: false,
        });
        let limiter = WriteLimiter::new(
            WriteLimit {
                per_minute: nonzero(60),
                burst: nonzero(20),
            },
            sessions,
        );
        for _ in 0..20 {
            assert_eq!(limiter.check("seller"), Ok(()));
        }
        let wait = limiter.check("seller").unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(limiter.check("buyer"), Ok(()));
    }

    #[test]
    fn defaults_allow_a_burst_of_at_least_20() {
        let limit = WriteLimit::from_env(&Env::default()).unwrap();
        assert!(limit.burst.get() >= 20);
    }
}
