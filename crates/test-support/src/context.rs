//! `TestContext`: the isolated world of one test — its own databases and event namespace on
//! the binary's shared servers — and services built in it as their binaries build them.

use common::config::Env;
use common::server::{Launch, Service};

use crate::{JWT_KEY, TestApp, UNTHROTTLED, servers, unique_name};

/// The most each of a test's streams holds: far more than any test writes.
const TEST_STREAM_BYTES: &str = "16777216";

/// The isolated world of one test: its own databases and event namespace on the shared servers.
#[derive(Debug, Clone)]
pub struct TestContext {
    /// Prefix of this test's databases and NATS subjects/streams.
    pub namespace: String,
    /// The MongoDB server.
    pub mongo_url: String,
    /// The NATS server.
    pub nats_url: String,
}

impl TestContext {
    /// A fresh namespace on this binary's servers.
    pub fn new() -> Self {
        // Trace contexts exist in tests as in production; logs show with RUST_LOG.
        common::telemetry::init_for_tests();
        let servers = servers();
        Self {
            namespace: unique_name("t"),
            mongo_url: servers.mongo_url.clone(),
            nats_url: servers.nats_url.clone(),
        }
    }

    /// The environment a service of this test reads: its own database, plain-HTTP cookies,
    /// the test session key, port 0 on loopback, and sign-in/sign-up and write limits high
    /// enough that tests signing up hundreds of users from 127.0.0.1, and writing as one user
    /// in bursts, are never throttled (the tests of those limits set their own).
    pub fn env(&self, service: &str) -> Env {
        Env::from_pairs([
            ("MONGO_URL", self.mongo_url.clone()),
            ("MONGO_DB", format!("{}_{service}", self.namespace)),
            ("NATS_URL", self.nats_url.clone()),
            ("EVENT_NAMESPACE", self.namespace.clone()),
            ("JWT_KEY", JWT_KEY.to_owned()),
            ("COOKIE_SECURE", "false".to_owned()),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", "0".to_owned()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", UNTHROTTLED.to_owned()),
            ("AUTH_RATE_LIMIT_BURST", UNTHROTTLED.to_owned()),
            // JetStream reserves each stream's limit on its one store: every test's two
            // streams at the default would not fit.
            ("EVENTS_STREAM_MAX_BYTES", TEST_STREAM_BYTES.to_owned()),
            ("WRITE_RATE_LIMIT_PER_MINUTE", UNTHROTTLED.to_owned()),
            ("WRITE_RATE_LIMIT_BURST", UNTHROTTLED.to_owned()),
            // Said, as every deployment must: the payments tests of the saga replace it with
            // a fake Stripe.
            ("PAYMENTS_GATEWAY", "local".to_owned()),
        ])
    }

    /// A database of this test, for asserting on what a service stored.
    pub async fn database(&self, service: &str) -> mongodb::Database {
        match mongodb::Client::with_uri_str(&self.mongo_url).await {
            Ok(client) => client.database(&format!("{}_{service}", self.namespace)),
            Err(error) => panic!("connect to test mongodb: {error}"),
        }
    }
}

impl TestContext {
    /// `C`'s service as its own binary builds it, from this test's environment.
    ///
    /// # Panics
    /// When its configuration is refused or it cannot be built.
    pub async fn build<C: Launch>(&self) -> Service {
        self.build_with::<C>(|env| env).await
    }

    /// [`TestContext::build`] from an adjusted environment (a variable set or removed).
    ///
    /// # Panics
    /// When its configuration is refused or it cannot be built.
    pub async fn build_with<C: Launch>(&self, adjust: impl FnOnce(Env) -> Env) -> Service {
        let config = match C::from_env(&adjust(self.env(C::NAME))) {
            Ok(config) => config,
            Err(error) => panic!("configure {}: {error}", C::NAME),
        };
        match config.build().await {
            Ok(service) => service,
            Err(error) => panic!("build {}: {error:#}", C::NAME),
        }
    }
}

/// `C`'s service alone, on a free port, in a fresh context.
pub async fn spawn_app<C: Launch>() -> TestApp {
    let context = TestContext::new();
    let service = context.build::<C>().await;
    TestApp::serve(context, vec![service]).await
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}
