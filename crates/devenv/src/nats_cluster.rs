//! A NATS cluster of several JetStream servers on loopback, routed to each other, as
//! production runs it: streams replicated over the servers, any one of which can be killed.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::Tools;
use crate::nats::{LISTEN_TIMEOUT, STOP_GRACE, nats_command};
use crate::process::{POLL, Running, ServerFiles, Supervised, free_ports, wait_for_port};

/// The cluster's name, which every server of it must share.
const CLUSTER: &str = "ticketing";
/// How long a cluster may take to elect its JetStream meta leader, or a restarted server to
/// catch up with the others.
const CURRENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The three ports of one server on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatsPorts {
    /// Clients connect here.
    pub client: u16,
    /// The other servers route here.
    pub cluster: u16,
    /// HTTP monitoring (`/healthz`, `/jsz`).
    pub monitor: u16,
}

/// How to run a cluster.
#[derive(Debug, Clone)]
pub struct NatsClusterOptions {
    /// How many servers; three keep a replicated stream going without any one.
    pub servers: usize,
    /// Server `i` keeps its store in `<store_root>/nats-<i>`; `None`: fresh temp dirs.
    pub store_root: Option<PathBuf>,
    /// Fixed ports, one set per server; `None`: free ones.
    pub ports: Option<Vec<NatsPorts>>,
    /// Server `i` logs to `<log_dir>/nats-<i>.log`; `None`: `nats.log` in its store dir.
    pub log_dir: Option<PathBuf>,
}

impl Default for NatsClusterOptions {
    fn default() -> Self {
        Self {
            servers: 3,
            store_root: None,
            ports: None,
            log_dir: None,
        }
    }
}

/// A running cluster whose JetStream has a meta leader.
#[derive(Debug)]
pub struct NatsCluster {
    /// Every server's client URL, comma-separated, as `NATS_URL` takes them.
    pub url: String,
    /// The servers.
    pub servers: Vec<NatsNode>,
}

/// One `nats-server` of a [`NatsCluster`].
#[derive(Debug)]
pub struct NatsNode {
    /// Its server name (`nats-<i>`), as JetStream names stream and consumer leaders.
    pub name: String,
    /// Its ports.
    pub ports: NatsPorts,
    /// Its JetStream store.
    pub store_dir: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
    /// The process, to halt or kill it (fault tests).
    pub server: Running,
    tools: Tools,
    /// The other servers' route URLs.
    routes: String,
}

impl NatsNode {
    /// Starts the server again on its ports and store (halting it first if it still runs) and
    /// waits until it is current with the cluster's JetStream again.
    pub fn restart(&mut self) -> Result<()> {
        self.server.halt_or_reap()?;
        let process = spawn_node(
            &self.name,
            &self.tools,
            self.server.files(),
            self.ports,
            &self.routes,
        )?;
        self.server.replace(process);
        wait_until_current(self.server.process_mut(), self.ports.monitor)
            .with_context(|| format!("{} log: {}", self.name, self.log_path.display()))
    }
}

/// Starts `opts.servers` servers routed to each other and waits until every one is current
/// with the cluster's JetStream (`/healthz`). On free ports, a start that loses a port to
/// another process is tried again.
pub fn start_nats_cluster(tools: &Tools, opts: NatsClusterOptions) -> Result<NatsCluster> {
    ensure!(opts.servers > 0, "a cluster needs a server");
    const ATTEMPTS: u32 = 3;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ports = match &opts.ports {
            Some(ports) => {
                ensure!(
                    ports.len() == opts.servers,
                    "{} port sets for {} servers",
                    ports.len(),
                    opts.servers
                );
                ports.clone()
            }
            None => free_ports(3 * opts.servers)?
                .chunks(3)
                .map(|ports| NatsPorts {
                    client: ports[0],
                    cluster: ports[1],
                    monitor: ports[2],
                })
                .collect(),
        };
        match start_servers(tools, &opts, &ports) {
            Ok(cluster) => return Ok(cluster),
            Err(err) if opts.ports.is_none() && attempt < ATTEMPTS => {
                eprintln!("devenv: nats cluster start failed, trying other ports: {err:#}");
            }
            Err(err) => return Err(err),
        }
    }
}

fn start_servers(
    tools: &Tools,
    opts: &NatsClusterOptions,
    ports: &[NatsPorts],
) -> Result<NatsCluster> {
    let route = |ports: &NatsPorts| format!("nats://127.0.0.1:{}", ports.cluster);
    let mut servers: Vec<NatsNode> = Vec::with_capacity(ports.len());
    for (i, own) in ports.iter().enumerate() {
        let name = format!("nats-{i}");
        let routes = ports
            .iter()
            .filter(|other| *other != own)
            .map(route)
            .collect::<Vec<_>>()
            .join(",");
        let files = ServerFiles::new(
            opts.store_root
                .as_ref()
                .map(|root| root.join(format!("nats-{i}"))),
            opts.log_dir
                .as_ref()
                .map(|dir| dir.join(format!("nats-{i}.log"))),
            "ticketing-nats",
            "nats.log",
        )?;
        let process = spawn_node(&name, tools, &files, *own, &routes)?;
        servers.push(NatsNode {
            name,
            ports: *own,
            store_dir: files.dir.clone(),
            log_path: files.log_path.clone(),
            server: Running::new(process, files),
            tools: tools.clone(),
            routes,
        });
    }
    for server in &mut servers {
        let monitor = server.ports.monitor;
        wait_until_current(server.server.process_mut(), monitor)
            .with_context(|| format!("{} log: {}", server.name, server.log_path.display()))?;
    }
    let url = ports
        .iter()
        .map(|ports| format!("nats://127.0.0.1:{}", ports.client))
        .collect::<Vec<_>>()
        .join(",");
    Ok(NatsCluster { url, servers })
}

/// Spawns server `name` and waits until it takes client connections.
fn spawn_node(
    name: &str,
    tools: &Tools,
    files: &ServerFiles,
    ports: NatsPorts,
    routes: &str,
) -> Result<Supervised> {
    let mut cmd = nats_command(tools, &files.dir, &files.log_path, ports.client)?;
    cmd.args(["--server_name", name, "--cluster_name", CLUSTER])
        .arg("--cluster")
        .arg(format!("nats://127.0.0.1:{}", ports.cluster))
        .arg("--routes")
        .arg(routes)
        .arg("--http_port")
        .arg(ports.monitor.to_string());
    let mut process = Supervised::spawn_with_cleanup(name, cmd, STOP_GRACE, files.cleanup_dir())?;
    wait_for_port(&mut process, ports.client, LISTEN_TIMEOUT)
        .with_context(|| format!("failed to start {name}"))?;
    Ok(process)
}

/// Waits until the server's `/healthz` answers 200: JetStream has a meta leader and this
/// server is current with every stream and consumer it holds.
fn wait_until_current(process: &mut Supervised, monitor: u16) -> Result<()> {
    let deadline = Instant::now() + CURRENT_TIMEOUT;
    loop {
        if let Some(status) = process.try_wait()? {
            bail!("{} exited during startup ({status})", process.name());
        }
        let last = match http_get(monitor, "/healthz") {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => format!("{status} {body}"),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "{} was not current within {CURRENT_TIMEOUT:?}; last /healthz: {last}",
                process.name()
            );
        }
        thread::sleep(POLL);
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port`: the status and the body's first line.
fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut lines = BufReader::new(stream).lines();
    let status_line = lines.next().context("no answer")??;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .with_context(|| format!("not an HTTP answer: {status_line}"))?;
    let body = lines
        .map_while(Result::ok)
        .skip_while(|line| !line.is_empty())
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    Ok((status, body))
}
