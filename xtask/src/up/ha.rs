//! `cargo xtask up --ha`: the marketplace as a cluster on this machine — a 3-member MongoDB
//! replica set, a 3-server NATS JetStream cluster with every stream on all three, and every
//! service as two processes behind `ticketing ingress` on the one address — each server and
//! process started again if it dies, as Kubernetes restarts a pod.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use devenv::{MongoSetOptions, NatsClusterOptions, NatsPorts, Program, Supervisor};

use super::launch::{App, Launch, env_var, log_to};

/// The services, in the order they start (the client last: it calls the others).
const SERVICES: [&str; 6] = [
    "auth",
    "tickets",
    "orders",
    "expiration",
    "payments",
    "client",
];
/// Processes of each service.
const REPLICAS: usize = 2;
/// Members of the replica set and servers of the NATS cluster.
const SERVERS: usize = 3;
/// Fixed ports, so that a cluster started again from `.data/ha` finds its members where its
/// configuration says they are; below the ephemeral range, so tests' servers never take them.
const MONGO_PORTS: [u16; SERVERS] = [27101, 27102, 27103];
const NATS_CLIENT_PORTS: [u16; SERVERS] = [4301, 4302, 4303];
const NATS_CLUSTER_PORTS: [u16; SERVERS] = [6301, 6302, 6303];
const NATS_MONITOR_PORTS: [u16; SERVERS] = [8301, 8302, 8303];
const SERVICE_STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts the servers (unless `MONGO_URL` / `NATS_URL` name existing clusters), then two
/// processes of every service and the ingress in front of them, each under `supervisor`, and
/// says where everything is.
pub(super) fn start(launch: &Launch, supervisor: &mut Supervisor) -> Result<()> {
    let data = launch.root.join(".data").join("ha");
    let logs = data.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("failed to create {}", logs.display()))?;

    let mongo_url = match env_var("MONGO_URL") {
        Some(url) => url,
        None => {
            let set = devenv::start_mongo_set(
                &launch.tools,
                MongoSetOptions {
                    members: SERVERS,
                    data_root: Some(data.clone()),
                    ports: Some(MONGO_PORTS.to_vec()),
                    log_dir: Some(logs.clone()),
                    ..MongoSetOptions::default()
                },
            )?;
            let url = set.url.clone();
            set.members
                .into_iter()
                .for_each(|member| supervisor.add(member));
            url
        }
    };
    let nats_url = match env_var("NATS_URL") {
        Some(url) => url,
        None => {
            let ports = (0..SERVERS)
                .map(|i| NatsPorts {
                    client: NATS_CLIENT_PORTS[i],
                    cluster: NATS_CLUSTER_PORTS[i],
                    monitor: NATS_MONITOR_PORTS[i],
                })
                .collect();
            let cluster = devenv::start_nats_cluster(
                &launch.tools,
                NatsClusterOptions {
                    servers: SERVERS,
                    store_root: Some(data.clone()),
                    ports: Some(ports),
                    log_dir: Some(logs.clone()),
                },
            )?;
            let url = cluster.url.clone();
            cluster
                .servers
                .into_iter()
                .for_each(|node| supervisor.add(node));
            url
        }
    };
    let replicas = env_var("NATS_STREAM_REPLICAS").unwrap_or_else(|| SERVERS.to_string());
    let api_url = format!("http://127.0.0.1:{}", launch.port);

    let mut upstreams = Vec::new();
    for service in SERVICES {
        let mut addresses = Vec::new();
        for replica in 1..=REPLICAS {
            let name = format!("{service}-{replica}");
            let port = free_port()?;
            let log = logs.join(format!("{name}.log"));
            let env = [
                ("MONGO_URL", mongo_url.clone()),
                ("NATS_URL", nats_url.clone()),
                ("NATS_STREAM_REPLICAS", replicas.clone()),
                ("API_URL", api_url.clone()),
            ];
            let command = service_command(&launch.app, service, port, env, &log);
            let process = Program::start(&name, command, SERVICE_STOP_GRACE, Some(log), Some(port))
                .with_context(|| format!("{name} did not start"))?;
            supervisor.add(process);
            addresses.push(format!("127.0.0.1:{port}"));
        }
        upstreams.push(format!("{service}={}", addresses.join(",")));
    }

    let log = logs.join("ingress.log");
    let port = launch.port;
    let app = launch.app.clone();
    let ingress_log = log.clone();
    let command = move || {
        let mut command = app.command(&["ingress", "--port", &port.to_string()]);
        for upstream in &upstreams {
            command.args(["--upstream", upstream]);
        }
        log_to(&mut command, &ingress_log)?;
        Ok(command)
    };
    supervisor.add(Program::start(
        "ingress",
        command,
        SERVICE_STOP_GRACE,
        Some(log),
        Some(port),
    )?);

    eprintln!();
    eprintln!("  mongo  {mongo_url}");
    eprintln!("  nats   {nats_url}  (streams on {replicas} servers)");
    eprintln!(
        "  logs   {}  (mongo-<i>, nats-<i>, <service>-<1|2>, ingress)",
        launch.rel(&logs)
    );
    eprintln!("  app    {api_url}  (two processes of each service; Ctrl-C stops everything)");
    eprintln!();
    Ok(())
}

/// `ticketing up --services <service>` on `port`, in `env`, logging to `log`.
fn service_command(
    app: &App,
    service: &'static str,
    port: u16,
    env: [(&'static str, String); 4],
    log: &Path,
) -> impl FnMut() -> Result<std::process::Command> + Send + 'static {
    let (app, log) = (app.clone(), log.to_path_buf());
    move || {
        let port = port.to_string();
        let mut command = app.command(&["up", "--services", service, "--port", &port]);
        command.envs(env.clone());
        log_to(&mut command, &log)?;
        Ok(command)
    }
}

/// A port that was free a moment ago, for a service process (it keeps it across restarts, so
/// the ingress's list stays right).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free port")?;
    Ok(listener.local_addr()?.port())
}
