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

use common::server::Service;

/// Builds the client: its pages, and the HTML 404 for every path no API claims.
pub fn build(config: &Config) -> anyhow::Result<Service> {
    let state = AppState::new(config)?;
    Ok(
        Service::new("client", routes::router(state.clone()), Vec::new())
            .with_fallback(routes::fallback(state)),
    )
}
