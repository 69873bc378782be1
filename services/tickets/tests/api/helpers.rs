//! `spawn_app()`: the tickets service on a free port with its own database and namespace.

use common::server::Service;
use test_support::{TestApp, TestContext};

/// The tickets service as its binary builds it, in `context`.
pub(crate) async fn build(context: &TestContext) -> Service {
    context.build::<tickets::Config>().await
}

pub(crate) async fn spawn_app() -> TestApp {
    test_support::spawn_app::<tickets::Config>().await
}
