//! `Limits`: what one client, or many, may take of a server — how long it may take to send a
//! request, how much work may run and wait at once, how many connections may be open.

use std::time::Duration;

use crate::config::{ConfigError, Env};

/// The server's limits, each from its own variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `HTTP_HEADER_TIMEOUT_SECONDS` (default 10): a request's head must arrive within this,
    /// and an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_SECONDS` (default 10, at most 30): a request's body must arrive
    /// within this once its head has, or the request gets 408. Bodies are read before the
    /// request takes a slot, so a slow sender holds a connection, never a slot.
    pub body_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_SECONDS` (default 30): a request not answered within this,
    /// waiting for its slot included, gets 503 (its work still runs to its end).
    pub request_timeout: Duration,
    /// `HTTP_MAX_IN_FLIGHT` (default 64): requests one service handles at once; kept below
    /// the MongoDB pool (`mongo::POOL_SIZE`) so that requests rarely queue inside the driver.
    pub max_in_flight: usize,
    /// `HTTP_MAX_QUEUED` (default 256): requests one service lets wait for a slot; beyond
    /// that it answers 503 with `Retry-After` at once, and `/readyz` says it is full.
    pub max_queued: usize,
    /// `HTTP_MAX_CONNECTIONS` (default 4096): connections the process keeps open; more wait
    /// in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 64,
            max_queued: 256,
            max_connections: 4096,
        }
    }
}

/// The longest `HTTP_BODY_TIMEOUT_SECONDS` accepted.
const MAX_BODY_TIMEOUT: Duration = Duration::from_secs(30);

impl Limits {
    /// Reads the limits, each defaulting as documented on its field.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let seconds = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            let value: f64 = env.parse_or(name, default.as_secs_f64())?;
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid(name, value, "expected a positive number of seconds"))
        };
        let count = |name: &str, default: usize| -> Result<usize, ConfigError> {
            let value: usize = env.parse_or(name, default)?;
            if value == 0 {
                return Err(invalid(name, value, "expected at least 1"));
            }
            Ok(value)
        };
        let body_timeout = seconds("HTTP_BODY_TIMEOUT_SECONDS", defaults.body_timeout)?;
        if body_timeout > MAX_BODY_TIMEOUT {
            return Err(invalid(
                "HTTP_BODY_TIMEOUT_SECONDS",
                body_timeout.as_secs_f64(),
                "at most 30 seconds",
            ));
        }
        Ok(Self {
            header_timeout: seconds("HTTP_HEADER_TIMEOUT_SECONDS", defaults.header_timeout)?,
            body_timeout,
            request_timeout: seconds("HTTP_REQUEST_TIMEOUT_SECONDS", defaults.request_timeout)?,
            max_in_flight: count("HTTP_MAX_IN_FLIGHT", defaults.max_in_flight)?,
            max_queued: count("HTTP_MAX_QUEUED", defaults.max_queued)?,
            max_connections: count("HTTP_MAX_CONNECTIONS", defaults.max_connections)?,
        })
    }
}

fn invalid(name: &str, value: impl std::fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_unless_set_and_nonsense_is_refused_by_name() {
        assert_eq!(
            Limits::from_env(&Env::default()).unwrap(),
            Limits::default()
        );
        let set = Limits::from_env(&Env::from_pairs([
            ("HTTP_BODY_TIMEOUT_SECONDS", "0.5"),
            ("HTTP_MAX_QUEUED", "3"),
        ]))
        .unwrap();
        assert_eq!(set.body_timeout, Duration::from_millis(500));
        assert_eq!(set.max_queued, 3);
        for (name, value) in [
            ("HTTP_BODY_TIMEOUT_SECONDS", "31"),
            ("HTTP_BODY_TIMEOUT_SECONDS", "0"),
            ("HTTP_MAX_IN_FLIGHT", "0"),
            ("HTTP_HEADER_TIMEOUT_SECONDS", "-1"),
        ] {
            let error = Limits::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
