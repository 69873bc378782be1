//! What every ticketing service shares: the error shape, validated JSON, sessions, configuration,
//! telemetry, health checks, shutdown, and the HTTP server that composes services.
//!
//! Services depend on this crate and never on each other; anything two services would otherwise
//! copy lives here.

pub mod config;
pub mod error;
pub mod events;
pub mod health;
pub mod json;
pub mod mongo;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod telemetry;

pub use error::{ApiError, FieldError, Result};
pub use json::ValidatedJson;
pub use session::{Claims, CurrentUser, MaybeCurrentUser, Sessions};
