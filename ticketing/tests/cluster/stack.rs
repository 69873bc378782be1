//! The cluster of this test binary, started on first use as `cargo xtask up --ha` starts one:
//! the servers and the service processes under a supervisor that starts again whatever dies,
//! the ingress in front of the processes. Only the services these tests use run: auth once,
//! tickets and orders twice.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::events::{EventBus, NatsConfig};
use devenv::{MongoSetOptions, NatsClusterOptions, Program, Supervisor, Unit, Watched};
use mongodb::bson::doc;
use test_support::{eventually, unique_name};
use ticketing::ingress::Upstream;
use ticketing::up::ServiceName;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// The service processes: each service and how many of it.
const PROCESSES: [(ServiceName, usize); 3] = [
    (ServiceName::Auth, 1),
    (ServiceName::Tickets, 2),
    (ServiceName::Orders, 2),
];
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a killed server or process may take to be back under the supervisor.
const BACK: Duration = Duration::from_secs(60);

/// The running cluster.
pub(crate) struct Cluster {
    /// The ingress, in front of every process.
    pub(crate) url: String,
    /// The replica set's seed list.
    pub(crate) mongo_url: String,
    /// Every NATS server, comma-separated.
    pub(crate) nats_url: String,
    /// The services' event namespace.
    pub(crate) namespace: String,
    /// Where the processes log.
    pub(crate) logs: PathBuf,
    /// `(mongod-<i>, port)` of each member.
    members: Vec<(String, u16)>,
    supervisor: Watched,
}

/// The cluster, started on first use; held by the test whose turn it is.
pub(crate) async fn cluster() -> (MutexGuard<'static, ()>, &'static Cluster) {
    static TURN: Mutex<()> = Mutex::const_new(());
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    let turn = TURN.lock().await;
    if CLUSTER.get().is_none() {
        let started = Instant::now();
        let cluster = Cluster::start().await;
        eprintln!(
            "cluster: up in {:.1} s: {}; processes log to {}",
            started.elapsed().as_secs_f64(),
            cluster.url,
            cluster.logs.display()
        );
        let _ = CLUSTER.set(cluster);
    }
    (turn, CLUSTER.get().unwrap())
}

impl Cluster {
    async fn start() -> Self {
        // Nothing here outlives this runtime: the servers and processes are the supervisor's
        // (a thread), the ingress has a runtime of its own.
        common::telemetry::init_for_tests();
        let tools = devenv::default_tools().unwrap();
        let (set, nats) = tokio::task::block_in_place(|| {
            let set = devenv::start_mongo_set(&tools, MongoSetOptions::default()).unwrap();
            let nats = devenv::start_nats_cluster(&tools, NatsClusterOptions::default()).unwrap();
            (set, nats)
        });
        let namespace = unique_name("cluster");
        // Kept after the run, for a failure's post-mortem, where `cargo clean` removes them.
        let logs = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&namespace);
        std::fs::create_dir_all(&logs).unwrap();
        let (mongo_url, nats_url) = (set.url.clone(), nats.url.clone());
        let members = set
            .members
            .iter()
            .map(|member| (member.name.clone(), member.port))
            .collect();
        let mut supervisor = Supervisor::new("cluster");
        set.members
            .into_iter()
            .for_each(|member| supervisor.add(member));
        nats.servers
            .into_iter()
            .for_each(|node| supervisor.add(node));

        let mut upstreams = Vec::new();
        for (service, count) in PROCESSES {
            let mut addresses = Vec::new();
            for replica in 1..=count {
                let name = format!("{}-{replica}", service.as_str());
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let log = logs.join(format!("{name}.log"));
                let command = {
                    let env = [
                        ("MONGO_URL", mongo_url.clone()),
                        ("NATS_URL", nats_url.clone()),
                        ("NATS_STREAM_REPLICAS", "3".to_owned()),
                        ("EVENT_NAMESPACE", namespace.clone()),
                        // Reserved on each server's store for each stream; far more than the
                        // tests write.
                        ("EVENTS_STREAM_MAX_BYTES", (16 << 20).to_string()),
                    ];
                    let log = log.clone();
                    move || service_command(service, port, &env, &log)
                };
                let process = tokio::task::block_in_place(|| {
                    Program::start(&name, command, STOP_GRACE, Some(log), Some(port))
                })
                .unwrap();
                supervisor.add(process);
                addresses.push(([127, 0, 0, 1], port).into());
            }
            upstreams.push(Upstream { service, addresses });
        }
        let supervisor = supervisor.watch();
        // Ready as Kubernetes sees it: each process answers `/readyz` (a process that failed to
        // start is started again meanwhile).
        let http = test_support::client();
        for upstream in &upstreams {
            for address in &upstream.addresses {
                eventually(&format!("{address} to be ready"), BACK, || async {
                    let response = http.get(format!("http://{address}/readyz")).send();
                    (response.await.ok()?.status() == reqwest::StatusCode::OK).then_some(())
                })
                .await;
            }
        }
        let url = serve_ingress(upstreams);
        Self {
            url,
            mongo_url,
            nats_url,
            namespace,
            logs,
            members,
            supervisor,
        }
    }

    /// A client of the replica set, for this test's runtime (a client's monitors run on the
    /// runtime that made it, and each test has its own).
    pub(crate) async fn mongo(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(&self.mongo_url)
            .await
            .unwrap()
    }

    /// A bus in the services' namespace, configured as `config` leaves it.
    pub(crate) async fn bus(&self, config: impl FnOnce(NatsConfig) -> NatsConfig) -> EventBus {
        let config = config(NatsConfig::new(&self.nats_url, &self.namespace));
        EventBus::connect(&config, "cluster-test").await.unwrap()
    }

    /// Kills the server or process `name` with SIGKILL; the supervisor starts it again at
    /// once, or (`held`) only once released, as a machine that stays down. Returns how many
    /// times it had been started again before.
    pub(crate) fn kill(&self, name: &str, held: bool) -> u32 {
        self.supervisor.with(|supervisor| {
            let (restarts, _) = supervisor.restarts(name);
            assert!(supervisor.hold(name, held), "no {name}");
            supervisor.unit(name).map(Unit::kill).unwrap();
            restarts
        })
    }

    /// Lets the supervisor start `name` again.
    pub(crate) fn release(&self, name: &str) {
        self.supervisor
            .with(|supervisor| supervisor.hold(name, false));
    }

    /// Waits until the supervisor has started `name` again since it had `restarts`; returns how
    /// long after `killed` it was back.
    pub(crate) async fn back(&self, name: &str, restarts: u32, killed: Instant) -> Duration {
        eventually(&format!("{name} to be back"), BACK, || async {
            let (now, back) = self.supervisor.with(|supervisor| supervisor.restarts(name));
            let back = back.filter(|_| now > restarts)?;
            Some(back.saturating_duration_since(killed))
        })
        .await
    }

    /// The member that is primary now.
    pub(crate) async fn primary(&self, mongo: &mongodb::Client) -> String {
        let hello = mongo
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await
            .unwrap();
        let primary = hello.get_str("primary").unwrap().to_owned();
        self.members
            .iter()
            .find(|(_, port)| primary == format!("127.0.0.1:{port}"))
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| panic!("no member is {primary}"))
    }

    /// The NATS server leading the event stream now.
    pub(crate) async fn stream_leader(&self, bus: &EventBus) -> String {
        let mut stream = bus.jetstream().get_stream(bus.stream_name()).await.unwrap();
        let info = stream.info().await.unwrap();
        info.cluster
            .as_ref()
            .and_then(|cluster| cluster.leader.clone())
            .expect("the event stream has a leader")
    }

    /// Makes `server` the leader of the durable consumer `consumer` too, by asking whoever
    /// leads it to step down until JetStream elects `server`.
    pub(crate) async fn lead_consumer(&self, bus: &EventBus, consumer: &str, server: &str) {
        let stream = bus.jetstream().get_stream(bus.stream_name()).await.unwrap();
        let leader = || async {
            let mut info: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(consumer).await.ok()?;
            let info = info.info().await.ok()?;
            info.cluster.as_ref()?.leader.clone()
        };
        for _ in 0..20 {
            let Some(now) = leader().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if now == server {
                return;
            }
            let subject = format!("CONSUMER.LEADER.STEPDOWN.{}.{consumer}", bus.stream_name());
            let _: Result<serde_json::Value, _> = bus
                .jetstream()
                .request(subject, &serde_json::json!({}))
                .await;
            eventually("a new consumer leader", BACK, || async {
                leader().await.filter(|next| *next != now)
            })
            .await;
        }
        panic!("{server} never became the leader of {consumer}");
    }
}

/// `ticketing up --services <service>` on `port`, logging to `log`.
fn service_command(
    service: ServiceName,
    port: u16,
    env: &[(&str, String)],
    log: &PathBuf,
) -> anyhow::Result<Command> {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    command
        .args(["up", "--services", service.as_str(), "--port"])
        .arg(port.to_string())
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("JWT_KEY", test_support::JWT_KEY)
        .env("COOKIE_SECURE", "false")
        .env("MAX_OPEN_ORDERS_PER_USER", "1000")
        .env("RUST_LOG", "info")
        .stdout(file.try_clone()?)
        .stderr(file);
    Ok(command)
}

/// Serves the ingress on a thread and runtime of its own (each test has its own runtime, the
/// ingress outlives them all); returns its URL.
fn serve_ingress(upstreams: Vec<Upstream>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            ticketing::ingress::serve(listener, upstreams, CancellationToken::new())
                .await
                .unwrap();
        });
    });
    url
}
