//! The browser client: server-rendered pages at the original client's paths, calling the
//! public APIs with the visitor's session cookie. It owns no data.

mod api;
mod assets;
mod config;
mod pages;
mod routes;
mod state;

pub use config::Config;
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
        Ok(
            Service::new(Self::NAME, routes::router(state.clone()), Vec::new())
                .with_fallback(routes::fallback(state)),
        )
    }
}
