//! The browser client: server-rendered pages at the original client's paths, calling the
//! public APIs with the visitor's session cookie. It owns no data.

mod api;
mod assets;
mod config;
mod csrf;
mod pages;
mod routes;
mod state;

pub use config::{CardInput, Config};
pub use state::AppState;

use common::server::{HttpConfig, Launch, Service};

impl Launch for Config {
    const NAME: &'static str = "client";

    fn http(&self) -> &HttpConfig {
        &self.http
    }

    /// The client's pages, and the HTML 404 for every path no API claims.
    async fn build(&self) -> anyhow::Result<Service> {
        let state = AppState::new(self)?;
        let pages = routes::router(state.clone()).layer(axum::middleware::from_fn_with_state(
            csrf::CookieSecure(self.cookie_secure),
            csrf::guard,
        ));
        Ok(Service::new(Self::NAME, pages, Vec::new()).with_fallback(routes::fallback(state)))
    }
}
