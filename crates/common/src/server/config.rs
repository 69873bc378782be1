//! What every service's configuration shares: where its server listens and with which browser
//! protections (`HttpConfig`), and, for the API services, their database and session keys
//! (`ServiceConfig`). Each module reads its own part.

use std::net::SocketAddr;

use axum::Router;

use super::Limits;
use crate::config::{ConfigError, Env, listen_addr};
use crate::mongo::MongoConfig;
use crate::rate_limit::{WriteLimit, WriteLimiter, limit_writes};
use crate::security::HttpSecurity;
use crate::session::{SessionConfig, Sessions};

/// Where a service's server listens, the browser protections it serves with, and what one
/// client, or many, may take of it.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `HOST`/`PORT`.
    pub listen: SocketAddr,
    /// `CORS_ALLOWED_ORIGINS`, and HSTS when `COOKIE_SECURE`.
    pub security: HttpSecurity,
    /// `HTTP_*` timeouts and bounds.
    pub limits: Limits,
}

impl HttpConfig {
    /// Reads `HOST`, `PORT`, `CORS_ALLOWED_ORIGINS`, `COOKIE_SECURE` and the `HTTP_*` limits.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            listen: listen_addr(env)?,
            security: HttpSecurity::from_env(env)?,
            limits: Limits::from_env(env)?,
        })
    }
}

/// The settings every API service shares.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where it listens and its browser protections.
    pub http: HttpConfig,
    /// `MONGO_URL`/`MONGO_DB`.
    pub mongo: MongoConfig,
    /// `JWT_KEY`, `SESSION_TTL_SECONDS`, `COOKIE_SECURE`.
    pub sessions: SessionConfig,
    /// `WRITE_RATE_LIMIT_PER_MINUTE`, `WRITE_RATE_LIMIT_BURST`: signed-in writes per user.
    pub writes: WriteLimit,
}

impl ServiceConfig {
    /// Reads the shared settings, failing on the first missing or invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpConfig::from_env(env)?,
            mongo: MongoConfig::from_env(env)?,
            sessions: SessionConfig::from_env(env)?,
            writes: WriteLimit::from_env(env)?,
        })
    }

    /// `router` with every signed-in write counted against its user ([`WriteLimit`]).
    pub fn limit_writes(&self, router: Router) -> Router {
        let limiter = WriteLimiter::new(self.writes, Sessions::new(&self.sessions));
        router.layer(axum::middleware::from_fn_with_state(limiter, limit_writes))
    }
}
