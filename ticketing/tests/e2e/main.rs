//! The whole marketplace in one process, as `ticketing up` runs it, against real MongoDB and
//! NATS: flows that cross services, the concurrency test, dead letters, a short bench, and
//! hostile input fuzzed at every route.
#![allow(clippy::unwrap_used)]

mod authz;
mod bench;
mod browser;
mod catchup;
mod concurrency;
mod csrf;
mod dlq;
mod faults;
mod flows;
mod fuzz;
mod keys;
mod metrics;
mod openapi;
mod overload;
mod pages;
mod saga;
mod trace_context;
mod visitor;

use test_support::{TestApp, TestContext, TestUser};

pub(crate) async fn spawn_stack() -> TestApp {
    spawn_stack_with(&[]).await
}

/// The whole stack with `extra` variables for every service; the client calls the APIs
/// through the stack's own address, as under `ticketing up`.
pub(crate) async fn spawn_stack_with(extra: &[(&str, &str)]) -> TestApp {
    let context = TestContext::new();
    let listener = TestApp::listener().await;
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    let services = ticketing::up::services(|name| {
        extra.iter().fold(
            context.env(name).with("API_URL", api_url.clone()),
            |env, (key, value)| env.with(*key, *value),
        )
    })
    .await
    .unwrap();
    TestApp::serve_on(context, listener, services)
}

/// A seller and a buyer signed up, and the seller's ticket "concert" at 25: the start of
/// most cross-service flows. Returns the ticket's id.
pub(crate) async fn seller_buyer_and_ticket(app: &TestApp) -> (TestUser, TestUser, String) {
    let seller = app.signup("seller@test.dev", "password").await;
    let buyer = app.signup("buyer@test.dev", "password").await;
    let ticket = app.create_ticket(&seller, "concert", 25.0).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    (seller, buyer, id)
}
