//! The auth service: sign up, sign in, sign out, and who is signed in.
//!
//! [`Launch::build`] is the one builder: the service's own binary and the all-in-one launcher
//! both serve what it returns.

mod config;
mod domain;
#[cfg_attr(not(feature = "bench"), allow(unreachable_pub))]
mod password;
mod routes;
mod state;
mod store;

pub use config::Config;
#[cfg(feature = "bench")]
pub use password::PasswordHasher;
pub use state::AppState;

use common::health::ReadinessCheck;
use common::server::{HttpConfig, Launch, Service};

/// The service's routes (`/api/users/*`) over the given state.
pub fn app(state: AppState) -> axum::Router {
    routes::router().with_state(state)
}

/// The OpenAPI 3.1 document of the service's routes, as served at `/api/users/openapi.json`.
pub use routes::openapi;

impl Launch for Config {
    const NAME: &'static str = "auth";

    fn http(&self) -> &HttpConfig {
        &self.service.http
    }

    /// Connects to the service's database, makes sure its indexes exist, and returns the
    /// routes and readiness checks to serve.
    async fn build(&self) -> anyhow::Result<Service> {
        let state = state::State::connect(self).await?;
        let check = ReadinessCheck::mongo(format!("{}-mongo", Self::NAME), state.users.database());
        Ok(Service::new(Self::NAME, app(state), vec![check]))
    }
}
