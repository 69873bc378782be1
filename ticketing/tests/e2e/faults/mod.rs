//! Faults with real processes, each SIGKILLed mid-load: the orders service (its messages in
//! hand unacknowledged), the tickets service between its writes and their publication,
//! nats-server, and mongod. Each test runs its own mongod and nats-server (it kills them, so it
//! cannot share the binary's), and prints its figures for `--nocapture`.

mod load;
mod mongod;
mod nats;
mod orders;
mod replication;
mod saga;
mod tickets;

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::config::Env;
use mongodb::Database;
use test_support::{TestApp, TestContext, unique_name};
use ticketing::up::ServiceName;

/// Tickets updated by every load.
const TICKETS: usize = 50;
/// Updates of each ticket: 50 × 10 = 500 updates, so every ticket ends at version 10.
const ROUNDS: i64 = 10;
const UPDATES: usize = TICKETS * ROUNDS as usize;
/// Concurrent writers; each owns its tickets, so a ticket's updates never race each other.
const WRITERS: usize = 8;
/// Bound on convergence after a fault. A SIGKILLed consumer's unacked messages come back only
/// after the listener's 10 s ack wait, so this leaves room for that.
const CONVERGE: Duration = Duration::from_secs(40);
/// Bound on anything else the tests wait for.
const WAIT: Duration = Duration::from_secs(20);

/// A test's own mongod and nats-server, which it may stop, kill or restart, and its services'
/// environment on them.
struct PrivateStack {
    mongo: devenv::Mongo,
    nats: devenv::Nats,
    context: TestContext,
    /// Variables every service gets besides the test's own, in this process and in children.
    extra: Vec<(&'static str, String)>,
}

impl PrivateStack {
    fn start() -> Self {
        let tools = devenv::default_tools().unwrap();
        let (mongo, nats) = tokio::task::block_in_place(|| {
            let mongo = devenv::start_mongo(&tools, devenv::MongoOptions::default()).unwrap();
            let nats = devenv::start_nats(&tools, devenv::NatsOptions::default()).unwrap();
            (mongo, nats)
        });
        let context = TestContext {
            namespace: unique_name("faults"),
            mongo_url: mongo.url.clone(),
            nats_url: nats.url.clone(),
        };
        Self {
            mongo,
            nats,
            context,
            extra: Vec::new(),
        }
    }

    /// The same stack, its services given `vars` too.
    fn with_env(mut self, vars: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        self.extra.extend(vars);
        self
    }

    /// A service's environment, as `ticketing up` gives it: the database is the service's
    /// name (the servers are this test's alone), events in this test's namespace.
    fn env(&self, service: &str) -> Env {
        self.extra.iter().fold(
            self.context.env(service).with("MONGO_DB", service),
            |env, (name, value)| env.with(*name, value.clone()),
        )
    }

    /// The named services in this process, on a free port.
    async fn serve(&self, names: &[ServiceName]) -> TestApp {
        let services = ticketing::up::services_named(names, |name| self.env(name))
            .await
            .unwrap();
        TestApp::serve(self.context.clone(), services).await
    }

    async fn database(&self, service: &str) -> Database {
        mongodb::Client::with_uri_str(&self.mongo.url)
            .await
            .unwrap()
            .database(service)
    }

    /// `ticketing up --services <service>` as a child process on `port` (0: any) with the
    /// same environment as the services in this process; its logs are appended to `log`.
    fn spawn(&self, service: ServiceName, port: u16, log: &Path) -> devenv::Supervised {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
        command
            .args(["up", "--services", service.as_str(), "--port"])
            .arg(port.to_string())
            .env_clear()
            .env("MONGO_URL", &self.context.mongo_url)
            .env("NATS_URL", &self.context.nats_url)
            .env("EVENT_NAMESPACE", &self.context.namespace)
            .envs(
                ["EVENTS_STREAM_MAX_BYTES"]
                    .into_iter()
                    .filter_map(|name| Some((name, self.env(service.as_str()).get(name)?))),
            )
            .env("JWT_KEY", test_support::JWT_KEY)
            .env("COOKIE_SECURE", "false")
            .env("RUST_LOG", "info")
            .envs(self.extra.iter().map(|(name, value)| (name, value)))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let name = format!("ticketing up --services {}", service.as_str());
        devenv::Supervised::spawn(&name, command, WAIT).unwrap()
    }

    /// Where a child process of this test logs.
    fn log(&self, service: ServiceName) -> std::path::PathBuf {
        let name = format!("{}-{}.log", self.context.namespace, service.as_str());
        std::env::temp_dir().join(name)
    }
}
