//! A whole marketplace for the checks that call one the way users' tools do (`cargo xtask
//! test`'s newman and schemathesis steps): a fresh mongod and nats-server of its own and
//! `ticketing up` on a free loopback port, all stopped when it is dropped.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use devenv::{Mongo, MongoOptions, Nats, NatsOptions, Supervised};

/// How long `ticketing up` may take to answer `/readyz` (a debug build on a busy machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Between two looks at `/readyz` while it starts.
const READY_POLL: Duration = Duration::from_millis(200);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `ticketing up` (the binary `exe`) serving every service on `port` over the given servers,
/// with the cookie's Secure flag off for plain HTTP: how `cargo xtask up` and the checks run it.
pub(crate) fn ticketing_up(exe: &Path, mongo_url: &str, nats_url: &str, port: u16) -> Command {
    let mut app = Command::new(exe);
    app.arg("up")
        .env("MONGO_URL", mongo_url)
        .env("NATS_URL", nats_url)
        .env("COOKIE_SECURE", "false")
        .env("TICKETING_PORT", port.to_string());
    app
}

/// A running marketplace with servers of its own.
pub(crate) struct Stack {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    // Dropped in this order: the app before the servers it uses.
    _app: Supervised,
    _nats: Nats,
    _mongo: Mongo,
}

impl Stack {
    /// Starts the servers and `exe up`, and waits until every service is ready; its log goes to
    /// `log_path`.
    pub(crate) fn start(root: &Path, exe: &Path, log_path: &Path) -> Result<Self> {
        let tools = devenv::ensure_tools(root)?;
        let mongo = devenv::start_mongo(&tools, MongoOptions::default())?;
        let nats = devenv::start_nats(&tools, NatsOptions::default())?;
        let port = free_port()?;
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut cmd = ticketing_up(exe, &mongo.url, &nats.url, port);
        // The collection pays with the local test gateway's cards, whatever this shell says.
        cmd.env("PAYMENTS_GATEWAY", "local")
            .env_remove("STRIPE_KEY")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut app = Supervised::spawn("ticketing", cmd, STOP_GRACE)?;
        wait_ready(&mut app, port)
            .with_context(|| format!("ticketing up: see {}", log_path.display()))?;
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            _app: app,
            _nats: nats,
            _mongo: mongo,
        })
    }
}

/// A port nobody listens on now (the OS's pick; released before `ticketing up` binds it).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `/readyz` answers 200, failing as soon as the app exits or after
/// [`READY_TIMEOUT`].
fn wait_ready(app: &mut Supervised, port: u16) -> Result<()> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < READY_TIMEOUT {
        if let Some(status) = app.try_wait()? {
            bail!("it exited ({status}) before it was ready");
        }
        match readyz(port) {
            Ok(line) if line.split_whitespace().nth(1) == Some("200") => return Ok(()),
            Ok(line) => last = line,
            Err(err) => last = format!("{err:#}"),
        }
        std::thread::sleep(READY_POLL);
    }
    bail!("not ready after {READY_TIMEOUT:?}; /readyz: {last}")
}

/// The status line of `GET /readyz` (plain HTTP/1.0, which xtask can write without a client).
fn readyz(port: u16) -> Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}
