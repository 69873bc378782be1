//! `spawn_app()`: the auth service on a free port with its own database.

use common::config::Env;
use test_support::{TestApp, TestContext};

pub(crate) async fn spawn_app() -> TestApp {
    spawn_with(|env| env).await
}

/// Spawns with an adjusted environment (e.g. `COOKIE_SECURE` left at its default).
pub(crate) async fn spawn_with(adjust: impl FnOnce(Env) -> Env) -> TestApp {
    let context = TestContext::new();
    let config = auth::Config::from_env(&adjust(context.env("auth"))).expect("auth config");
    let service = auth::build(&config).await.expect("build auth");
    TestApp::serve(context, vec![service]).await
}

pub(crate) fn body(email: &str, password: &str) -> serde_json::Value {
    serde_json::json!({ "email": email, "password": password })
}
