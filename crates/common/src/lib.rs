//! What every ticketing service shares: the error shape, validated JSON, sessions, configuration,
//! telemetry, health checks, Prometheus metrics, shutdown, rate limits, browser protections,
//! what every OpenAPI document shares, and the HTTP server that composes services.
//!
//! Services depend on this crate and never on each other; anything two services would otherwise
//! copy lives here.

pub mod backoff;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod mongo;
pub mod openapi;
pub mod rate_limit;
pub mod recent;
pub mod security;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod task;
pub mod telemetry;

/// Every process of ours allocates with jemalloc: under load it costs a service less CPU than
/// glibc's malloc (`docs/performance.md`). Declared here, once, because every binary (the
/// services, the launcher, the tests) links this crate.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Makes ring the process's TLS provider. HTTP clients (reqwest) are built without a default
/// provider so that the tree carries one crypto library, the one MongoDB already uses; call
/// this before building a client. Calling it again is harmless.
pub fn install_tls_provider() {
    // An error only says a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub use error::{ApiError, FieldError, Result};
pub use extract::{RecordId, ValidatedJson};
pub use session::{Claims, CurrentUser, MaybeCurrentUser, Sessions};
