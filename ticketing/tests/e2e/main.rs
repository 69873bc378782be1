//! The whole marketplace in one process, as `ticketing up` runs it, against real MongoDB and
//! NATS: flows that cross services, the concurrency test, and dead letters.
#![allow(clippy::unwrap_used)]

mod concurrency;
mod dlq;
mod flows;

use test_support::{TestApp, TestContext};

pub(crate) async fn spawn_stack() -> TestApp {
    let context = TestContext::new();
    let services = ticketing::up::services(|name| context.env(name))
        .await
        .unwrap();
    TestApp::serve(context, services).await
}
