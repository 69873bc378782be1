//! `spawn_app()`: the auth service on a free port with its own database.

use common::config::Env;
use test_support::{TestApp, TestContext};

pub(crate) async fn spawn_app() -> TestApp {
    test_support::spawn_app::<auth::Config>().await
}

/// Spawns with an adjusted environment (e.g. `COOKIE_SECURE` left at its default).
pub(crate) async fn spawn_with(adjust: impl FnOnce(Env) -> Env) -> TestApp {
    let context = TestContext::new();
    let service = context.build_with::<auth::Config>(adjust).await;
    TestApp::serve(context, vec![service]).await
}

pub(crate) fn body(email: &str, password: &str) -> serde_json::Value {
    serde_json::json!({ "email": email, "password": password })
}
