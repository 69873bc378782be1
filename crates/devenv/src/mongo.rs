//! A single-node MongoDB replica set (transactions need one), started and initiated on demand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::Tools;
use crate::process::{
    POLL, Running, ServerFiles, Supervised, open_log, start_on_port, wait_for_port,
};

/// Name of the replica set every started `mongod` runs.
pub(crate) const REPLICA_SET: &str = "rs0";
/// Server error code of `replSetInitiate` on a data dir that already holds a replica set config.
pub(crate) const ALREADY_INITIALIZED: i32 = 23;
pub(crate) const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
const PRIMARY_TIMEOUT: Duration = Duration::from_secs(30);
/// A clean shutdown takes well under a second; the margin is for a checkpoint on a slow disk.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(20);

/// How to run `mongod`.
#[derive(Debug, Clone)]
pub struct MongoOptions {
    /// Data directory, created if missing; `None`: a fresh temp dir, removed when the server stops.
    pub data_dir: Option<PathBuf>,
    /// Port on 127.0.0.1; `None`: a free one.
    pub port: Option<u16>,
    /// WiredTiger cache size; 0.25 (the minimum) keeps several test servers affordable.
    pub cache_size_gb: f64,
    /// Log file, appended to; `None`: `mongod.log` inside the data dir.
    pub log_path: Option<PathBuf>,
}

impl Default for MongoOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            port: None,
            cache_size_gb: 0.25,
            log_path: None,
        }
    }
}

/// A running `mongod`, primary of the single-node replica set `rs0`; stopped on drop.
#[derive(Debug)]
pub struct Mongo {
    /// Connection string for the driver, e.g. `mongodb://127.0.0.1:PORT/?directConnection=true&replicaSet=rs0`.
    pub url: String,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
    /// The process, to halt or kill it (fault tests).
    pub server: Running,
    /// What [`Mongo::restart`] runs again: the same executable, cache size and files.
    tools: Tools,
    opts: MongoOptions,
}

impl Mongo {
    /// Stops `mongod` gracefully (SIGTERM, SIGKILL after 20 s) and removes a temp data dir.
    pub fn stop(mut self) -> Result<()> {
        self.server.halt()
    }

    /// Starts `mongod` again on the same port with the same data dir, halting it first if it
    /// still runs, and waits until it is the writable primary again.
    pub fn restart(&mut self) -> Result<()> {
        self.server.halt_or_reap()?;
        let (process, _) = spawn_primary(
            &self.tools,
            &self.opts,
            self.server.files(),
            Some(self.port),
        )
        .context("failed to restart mongod")?;
        self.server.replace(process);
        Ok(())
    }
}

/// Starts `mongod`, initiates the replica set (or points an existing one at the new port) and
/// waits until it is a writable primary.
///
/// Blocking; the driver work runs on its own thread and runtime, so this may be called from
/// inside a tokio runtime too.
pub fn start_mongo(tools: &Tools, opts: MongoOptions) -> Result<Mongo> {
    let files = ServerFiles::new(
        opts.data_dir.clone(),
        opts.log_path.clone(),
        "ticketing-mongo",
        "mongod.log",
    )?;
    let (process, port) =
        spawn_primary(tools, &opts, &files, opts.port).context("failed to start mongod")?;

    Ok(Mongo {
        url: format!("mongodb://127.0.0.1:{port}/?directConnection=true&replicaSet={REPLICA_SET}"),
        port,
        data_dir: files.dir.clone(),
        log_path: files.log_path.clone(),
        server: Running::new(process, files),
        tools: tools.clone(),
        opts,
    })
}

/// Spawns `mongod` on `port` (a free one if `None`) and waits until it is a writable primary.
fn spawn_primary(
    tools: &Tools,
    opts: &MongoOptions,
    files: &ServerFiles,
    port: Option<u16>,
) -> Result<(Supervised, u16)> {
    let spawn = |port| {
        let cmd = mongod_command(tools, opts.cache_size_gb, &files.dir, &files.log_path, port)?;
        Supervised::spawn_with_cleanup("mongod", cmd, STOP_GRACE, files.cleanup_dir())
    };
    let ready = |process: &mut Supervised, port| {
        wait_for_port(process, port, LISTEN_TIMEOUT)?;
        become_primary(process, port)
    };
    start_on_port(port, &files.log_path, spawn, ready)
}

pub(crate) fn mongod_command(
    tools: &Tools,
    cache_size_gb: f64,
    data_dir: &Path,
    log_path: &Path,
    port: u16,
) -> Result<Command> {
    // Errors before mongod opens --logpath (bad flags) go to stderr: keep them in the same log.
    let log = open_log(log_path)?;
    let mut cmd = Command::new(&tools.mongod);
    cmd.args(["--replSet", REPLICA_SET, "--bind_ip", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--dbpath")
        .arg(data_dir)
        .arg("--wiredTigerCacheSizeGB")
        .arg(cache_size_gb.to_string())
        .arg("--quiet")
        .arg("--logpath")
        .arg(log_path)
        // Without it mongod renames the previous log on every start.
        .arg("--logappend")
        // No /tmp/mongodb-PORT.sock left behind by a killed server.
        .arg("--nounixsocket")
        // Only applies when the oplog is first created; the default takes 5% of the disk.
        .args(["--oplogSize", "128"])
        // Full-time diagnostic data capture costs CPU and disk that a dev box does not need.
        .args(["--setParameter", "diagnosticDataCollectionEnabled=false"])
        // SIGTERM first keeps a member serving for this long (15 s by default) so that clients
        // move on before it goes; a local server's clients are stopped before it, or gone.
        .args([
            "--setParameter",
            "shutdownTimeoutMillisForSignaledShutdown=1000",
        ])
        // A transaction of a process that was killed keeps its documents locked until it
        // expires (60 s by default), and every apply to them meanwhile conflicts; ours take
        // milliseconds (the deployments set the same).
        .args(["--setParameter", "transactionLifetimeLimitSeconds=10"])
        // Nothing reads at a past cluster time, so no snapshot history is kept: with the
        // default 300 s, every update of a hot document walks a chain of its versions from the
        // last five minutes, and sustained updates slow down as it grows (the deployments set
        // the same; docs/performance.md).
        .args(["--setParameter", "minSnapshotHistoryWindowInSeconds=0"])
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(cmd)
}

/// Makes the freshly started `mongod` on `port` the primary of its single-member set.
fn become_primary(process: &mut Supervised, port: u16) -> Result<()> {
    run_setup("mongo setup", &mut [process], move |abort| async move {
        setup_replica_set(port, &abort).await
    })
}

/// Runs `setup` on a fresh thread with its own runtime (the caller may be inside one),
/// watching `processes` meanwhile so that a crash is reported at once rather than as a
/// timeout; `setup` gets a flag that is raised when it should give up.
pub(crate) fn run_setup<F, Fut>(
    what: &str,
    processes: &mut [&mut Supervised],
    setup: F,
) -> Result<()>
where
    F: FnOnce(Arc<AtomicBool>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>>,
{
    let abort = Arc::new(AtomicBool::new(false));
    let worker = {
        let abort = Arc::clone(&abort);
        thread::Builder::new()
            .name("devenv-setup".into())
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("failed to build a tokio runtime")?;
                runtime.block_on(setup(abort))
            })
            .with_context(|| format!("failed to spawn the {what} thread"))?
    };
    loop {
        if worker.is_finished() {
            return worker
                .join()
                .map_err(|_| anyhow!("the {what} thread panicked"))?;
        }
        for process in processes.iter_mut() {
            if let Some(status) = process.try_wait()? {
                abort.store(true, Ordering::Relaxed);
                let _ = worker.join();
                bail!("{} exited during {what} ({status})", process.name());
            }
        }
        thread::sleep(POLL);
    }
}

async fn setup_replica_set(port: u16, abort: &AtomicBool) -> Result<()> {
    let client = direct_client(port).await?;
    let result = initiate_and_wait(&client.database("admin"), port, abort).await;
    client.shutdown().immediate(true).await;
    result
}

/// A client of the one `mongod` on `port`, whatever its state, for setup and checks.
pub(crate) async fn direct_client(port: u16) -> Result<Client> {
    let mut options =
        ClientOptions::parse(format!("mongodb://127.0.0.1:{port}/?directConnection=true"))
            .await
            .context("failed to parse the setup connection string")?;
    // Short timeouts keep the abort flag and the overall deadline responsive.
    options.server_selection_timeout = Some(Duration::from_secs(2));
    options.connect_timeout = Some(Duration::from_secs(2));
    options.app_name = Some("devenv".into());
    Client::with_options(options).context("failed to create a mongo client")
}

async fn initiate_and_wait(admin: &Database, port: u16, abort: &AtomicBool) -> Result<()> {
    let host = format!("127.0.0.1:{port}");
    let config = doc! { "_id": REPLICA_SET, "members": [{ "_id": 0, "host": &host }] };
    match admin.run_command(doc! { "replSetInitiate": config }).await {
        Ok(_) => {}
        Err(err) if command_code(&err) == Some(ALREADY_INITIALIZED) => {
            // A reused data dir remembers the port of its previous run.
            point_config_at(admin, &host).await?;
        }
        Err(err) => return Err(err).context("replSetInitiate failed"),
    }

    let deadline = Instant::now() + PRIMARY_TIMEOUT;
    loop {
        let last = match admin.run_command(doc! { "hello": 1 }).await {
            Ok(reply) if reply.get_bool("isWritablePrimary").unwrap_or(false) => return Ok(()),
            Ok(reply) => format!("{reply}"),
            Err(err) => format!("{err}"),
        };
        if abort.load(Ordering::Relaxed) {
            bail!("aborted");
        }
        if Instant::now() >= deadline {
            bail!(
                "mongod did not become a writable primary within {PRIMARY_TIMEOUT:?}; last hello: {last}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Makes `host` the only member of the stored config; `force` because a node that cannot find
/// itself in its config is not primary and would refuse a normal reconfig.
async fn point_config_at(admin: &Database, host: &str) -> Result<()> {
    let reply = admin
        .run_command(doc! { "replSetGetConfig": 1 })
        .await
        .context("replSetGetConfig failed")?;
    let mut config: Document = reply
        .get_document("config")
        .context("replSetGetConfig returned no config")?
        .clone();
    let hosts: Vec<&str> = config
        .get_array("members")
        .context("the replica set config has no members")?
        .iter()
        .filter_map(|member| member.as_document()?.get_str("host").ok())
        .collect();
    if hosts == [host] {
        return Ok(());
    }
    let version = config.get_i32("version").unwrap_or(1);
    config.insert("version", version + 1);
    config.insert("members", vec![doc! { "_id": 0, "host": host }]);
    admin
        .run_command(doc! { "replSetReconfig": config, "force": true })
        .await
        .with_context(|| format!("replSetReconfig to {host} failed"))?;
    Ok(())
}

pub(crate) fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        _ => None,
    }
}
