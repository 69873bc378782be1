//! Per-client rate limits: a token bucket (GCRA) per client address, refusing with 429 and
//! `Retry-After` in the error shape.
//!
//! A handler opts in by taking [`WithinRateLimit`] before its body, so the limit is visible in
//! its signature and is checked before any work (parsing, hashing) is done:
//!
//! ```ignore
//! async fn sign_in(_: WithinRateLimit, State(state): State<AppState>, ValidatedJson(body): ValidatedJson<SignIn>)
//! ```
//!
//! The client is the socket peer, or behind the proxies of `TRUSTED_PROXIES` the rightmost
//! `X-Forwarded-For` hop they did not add (`client.rs`). Accounts have limits of their own: on
//! failed sign-ins (`account.rs`) and on signed-in writes (`writes.rs`).

mod account;
mod client;
mod writes;

pub use account::{AccountFailures, FailureLimit};
pub use client::TrustedProxies;
pub use writes::{WriteLimit, WriteLimiter, limit_writes};

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;

/// Forget idle clients every this many checks, so the table stays as large as the set of
/// recently active clients.
const CLEANUP_EVERY: u64 = 4096;

/// A limit: a sustained rate with a burst allowance, and where the client's address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute a client may make in the long run.
    pub per_minute: NonZeroU32,
    /// Requests a client may make at once (the bucket's size).
    pub burst: NonZeroU32,
    /// The proxies whose `X-Forwarded-For` says who the client is.
    pub trusted_proxies: TrustedProxies,
}

/// A keyed token bucket shared by the routes it guards. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter(Arc<Inner>);

struct Inner {
    limit: RateLimit,
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buckets are per client address: not for logs.
        f.debug_tuple("RateLimiter").field(&self.0.limit).finish()
    }
}

impl RateLimiter {
    /// One bucket per client, each holding `burst` requests and refilling `per_minute`.
    pub fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_minute(limit.per_minute).allow_burst(limit.burst);
        Self(Arc::new(Inner {
            limit,
            buckets: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }))
    }

    /// The limit this limiter applies.
    pub fn limit(&self) -> &RateLimit {
        &self.0.limit
    }

    /// Takes one request from `client`'s bucket, or says how long until one is available.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let inner = &self.0;
        if inner.checks.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            inner.buckets.retain_recent();
        }
        inner
            .buckets
            .check_key(&bucket_key(client))
            .map_err(|not_until| not_until.wait_time_from(inner.buckets.clock().now()))
    }

    /// The client a request comes from (see [`TrustedProxies::client_of`]).
    pub fn client_of(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        self.0.limit.trusted_proxies.client_of(headers, peer)
    }
}

/// IPv6 clients are limited per /64, the smallest block a subscriber usually gets: otherwise
/// one client could rotate through its addresses to get a fresh bucket each time.
fn bucket_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// Proof that the request is within its client's rate limit; rejects with
/// [`ApiError::TooManyRequests`] (429, `Retry-After`) otherwise.
#[derive(Debug, Clone, Copy)]
pub struct WithinRateLimit;

impl<S> FromRequestParts<S> for WithinRateLimit
where
    RateLimiter: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let limiter = RateLimiter::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let client = limiter.client_of(&parts.headers, peer);
        match limiter.check(client) {
            Ok(()) => Ok(Self),
            Err(retry_after) => {
                // Debug, like every refusal: a flood of refused requests must not flood the logs.
                tracing::debug!(%client, "rate limited");
                Err(ApiError::TooManyRequests { retry_after })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            trusted_proxies: TrustedProxies::default(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_while_others_are_unaffected() {
        let limiter = limiter(6, 3);
        for _ in 0..3 {
            assert_eq!(limiter.check(ip("10.0.0.1")), Ok(()));
        }
        let wait = limiter.check(ip("10.0.0.1")).unwrap_err();
        // One request every 10 s at 6 a minute.
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert_eq!(limiter.check(ip("10.0.0.2")), Ok(()));
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let limiter = limiter(60, 1);
        assert_eq!(limiter.check(ip("2001:db8:1:2::1")), Ok(()));
        assert!(limiter.check(ip("2001:db8:1:2:ffff::9")).is_err());
        assert_eq!(limiter.check(ip("2001:db8:1:3::1")), Ok(()));
    }
}
