//! A NATS server with JetStream, started on demand.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::Tools;
use crate::process::{Running, ServerFiles, Supervised, open_log, start_on_port, wait_for_port};

pub(crate) const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// How to run `nats-server`.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// JetStream store directory, created if missing; `None`: a fresh temp dir, removed when the server stops.
    pub store_dir: Option<PathBuf>,
    /// Port on 127.0.0.1; `None`: a free one.
    pub port: Option<u16>,
    /// Log file, appended to; `None`: `nats.log` inside the store dir.
    pub log_path: Option<PathBuf>,
    /// A configuration file (`-c`), e.g. the deployment's users and permissions; the address,
    /// port and store above still apply over it.
    pub config: Option<PathBuf>,
    /// Variables set for the server only: the `$NAMES` a configuration file refers to, such as
    /// passwords.
    pub env: Vec<(String, String)>,
}

/// A running `nats-server` with JetStream enabled; stopped on drop.
#[derive(Debug)]
pub struct Nats {
    /// Client URL, `nats://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its JetStream store directory.
    pub store_dir: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
    /// The process, to halt or kill it (fault tests).
    pub server: Running,
    /// The executable [`Nats::restart`] runs again, and with what.
    tools: Tools,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Nats {
    /// Stops `nats-server` gracefully (SIGTERM, SIGKILL after 10 s) and removes a temp store.
    pub fn stop(mut self) -> Result<()> {
        self.server.halt()
    }

    /// Starts `nats-server` again on the same port with the same store (its streams,
    /// consumers and messages), halting it first if it still runs, and waits until it greets
    /// clients with JetStream on.
    pub fn restart(&mut self) -> Result<()> {
        self.server.halt_or_reap()?;
        let (process, _) = spawn_ready(
            &self.tools,
            self.server.files(),
            Some(self.port),
            self.config.as_deref(),
            &self.env,
        )
        .context("failed to restart nats-server")?;
        self.server.replace(process);
        Ok(())
    }
}

/// Starts `nats-server` with JetStream and waits until it greets clients with JetStream on.
pub fn start_nats(tools: &Tools, opts: NatsOptions) -> Result<Nats> {
    let files = ServerFiles::new(opts.store_dir, opts.log_path, "ticketing-nats", "nats.log")?;
    let (process, port) = spawn_ready(tools, &files, opts.port, opts.config.as_deref(), &opts.env)
        .context("failed to start nats-server")?;
    Ok(Nats {
        url: format!("nats://127.0.0.1:{port}"),
        port,
        store_dir: files.dir.clone(),
        log_path: files.log_path.clone(),
        server: Running::new(process, files),
        tools: tools.clone(),
        config: opts.config,
        env: opts.env,
    })
}

/// Spawns `nats-server` on `port` (a free one if `None`) and waits for its JetStream greeting.
fn spawn_ready(
    tools: &Tools,
    files: &ServerFiles,
    port: Option<u16>,
    config: Option<&Path>,
    env: &[(String, String)],
) -> Result<(Supervised, u16)> {
    let spawn = |port| {
        let mut cmd = nats_command(tools, &files.dir, &files.log_path, port)?;
        if let Some(config) = config {
            cmd.arg("-c").arg(config);
        }
        cmd.envs(env.iter().map(|(name, value)| (name, value)));
        Supervised::spawn_with_cleanup("nats-server", cmd, STOP_GRACE, files.cleanup_dir())
    };
    let ready = |process: &mut Supervised, port| {
        wait_for_port(process, port, LISTEN_TIMEOUT)?;
        let greeting = check_greeting(port);
        // Whoever won a race for the port may have answered instead.
        if let Some(status) = process.try_wait()? {
            bail!("nats-server exited during startup ({status})");
        }
        greeting
    };
    start_on_port(port, &files.log_path, spawn, ready)
}

pub(crate) fn nats_command(
    tools: &Tools,
    store_dir: &Path,
    log_path: &Path,
    port: u16,
) -> Result<Command> {
    // nats-server logs to stderr unless told otherwise.
    let log = open_log(log_path)?;
    let mut cmd = Command::new(&tools.nats_server);
    cmd.args(["-a", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-js")
        .arg("-sd")
        .arg(store_dir)
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(cmd)
}

/// Reads the `INFO {...}` line a NATS server sends on connect and checks that JetStream is on.
fn check_greeting(port: u16) -> Result<()> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("failed to connect to nats on port {port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .with_context(|| format!("no greeting from nats on port {port}"))?;
    if !line.starts_with("INFO ") {
        bail!(
            "port {port} did not greet like a NATS server: {}",
            line.trim_end()
        );
    }
    if !line.contains(r#""jetstream":true"#) {
        bail!(
            "nats-server on port {port} runs without JetStream: {}",
            line.trim_end()
        );
    }
    Ok(())
}
