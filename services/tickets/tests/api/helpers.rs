//! `spawn_app()`: the tickets service on a free port with its own database and namespace.

use std::time::Duration;

use common::server::Service;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{TestApp, TestContext, TestUser};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn build(context: &TestContext) -> Service {
    let config = tickets::Config::from_env(&context.env("tickets")).unwrap();
    tickets::build(&config).await.unwrap()
}

pub(crate) async fn spawn_app() -> TestApp {
    let context = TestContext::new();
    let service = build(&context).await;
    TestApp::serve(context, vec![service]).await
}

pub(crate) async fn create_ticket(
    app: &TestApp,
    user: &TestUser,
    title: &str,
    price: f64,
) -> Value {
    let response = app
        .post(
            "/api/tickets",
            Some(&user.cookie),
            json!({"title": title, "price": price}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

/// Waits until the events of this test satisfy `check`, returning them.
pub(crate) async fn events_where(
    app: &TestApp,
    what: &str,
    check: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    test_support::eventually(what, WAIT, || async {
        let events = app.context.events().await;
        check(&events).then_some(events)
    })
    .await
}
