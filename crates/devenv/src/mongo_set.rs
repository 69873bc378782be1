//! A MongoDB replica set of several members on loopback, as production runs it: elections,
//! majority writes, and a primary that can be killed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use mongodb::Database;
use mongodb::bson::{Document, doc};

use crate::Tools;
use crate::mongo::{
    ALREADY_INITIALIZED, LISTEN_TIMEOUT, REPLICA_SET, STOP_GRACE, command_code, direct_client,
    mongod_command, run_setup,
};
use crate::process::{POLL, Running, ServerFiles, Supervised, start_on_port, wait_for_port};

/// How long a set may take to elect its first primary, or a restarted member (which may roll
/// back what it wrote alone before it died) to be a member again.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How to run a replica set.
#[derive(Debug, Clone)]
pub struct MongoSetOptions {
    /// How many members; three survive the loss of any one.
    pub members: usize,
    /// Member `i` keeps its data in `<data_root>/mongo-<i>`; `None`: fresh temp dirs, removed
    /// when the members stop.
    pub data_root: Option<PathBuf>,
    /// One port per member on 127.0.0.1; `None`: free ones. A set started again from its data
    /// remembers its members' addresses, so it needs the same ports.
    pub ports: Option<Vec<u16>>,
    /// Member `i` logs to `<log_dir>/mongo-<i>.log`; `None`: `mongod.log` in its data dir.
    pub log_dir: Option<PathBuf>,
    /// WiredTiger cache size of each member.
    pub cache_size_gb: f64,
}

impl Default for MongoSetOptions {
    fn default() -> Self {
        Self {
            members: 3,
            data_root: None,
            ports: None,
            log_dir: None,
            cache_size_gb: 0.25,
        }
    }
}

/// A running replica set `rs0`: every member a primary or a secondary.
#[derive(Debug)]
pub struct MongoSet {
    /// Connection string for the driver: the seed list of every member and the set's name,
    /// without `directConnection`, so that the driver follows the primary through elections.
    pub url: String,
    /// The members, in the order of their `_id` in the set's configuration.
    pub members: Vec<MongoMember>,
}

/// One `mongod` of a [`MongoSet`].
#[derive(Debug)]
pub struct MongoMember {
    /// `mongod-<i>`, for messages.
    pub name: String,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
    /// The process, to halt or kill it (fault tests).
    pub server: Running,
    tools: Tools,
    cache_size_gb: f64,
}

impl MongoMember {
    /// Starts the member again on its port and data (halting it first if it still runs) and
    /// waits until it is the set's primary or a secondary again.
    pub fn restart(&mut self) -> Result<()> {
        self.server.halt_or_reap()?;
        let (process, _) = spawn_member(
            &self.name,
            &self.tools,
            self.cache_size_gb,
            self.server.files(),
            Some(self.port),
        )?;
        self.server.replace(process);
        let port = self.port;
        run_setup(
            "the member's return",
            &mut [self.server.process_mut()],
            move |abort| async move { wait_for_member(port, &abort).await },
        )
        .with_context(|| format!("{} log: {}", self.name, self.log_path.display()))
    }
}

/// Starts `opts.members` members, initiates the set with all of them (or finds it initiated
/// with the same members, from their data) and waits until one is primary and every other a
/// secondary.
pub fn start_mongo_set(tools: &Tools, opts: MongoSetOptions) -> Result<MongoSet> {
    ensure!(opts.members > 0, "a replica set needs a member");
    if let Some(ports) = &opts.ports {
        ensure!(
            ports.len() == opts.members,
            "{} ports for {} members",
            ports.len(),
            opts.members
        );
    }
    let mut members = Vec::with_capacity(opts.members);
    for i in 0..opts.members {
        let name = format!("mongod-{i}");
        let files = ServerFiles::new(
            opts.data_root
                .as_ref()
                .map(|root| root.join(format!("mongo-{i}"))),
            opts.log_dir
                .as_ref()
                .map(|dir| dir.join(format!("mongo-{i}.log"))),
            "ticketing-mongo",
            "mongod.log",
        )?;
        let fixed = opts.ports.as_ref().map(|ports| ports[i]);
        let (process, port) = spawn_member(&name, tools, opts.cache_size_gb, &files, fixed)?;
        members.push(MongoMember {
            name,
            port,
            data_dir: files.dir.clone(),
            log_path: files.log_path.clone(),
            server: Running::new(process, files),
            tools: tools.clone(),
            cache_size_gb: opts.cache_size_gb,
        });
    }
    let ports: Vec<u16> = members.iter().map(|member| member.port).collect();
    let hosts = hosts(&ports);
    let mut processes: Vec<&mut Supervised> = members
        .iter_mut()
        .map(|member| member.server.process_mut())
        .collect();
    run_setup(
        "replica set setup",
        &mut processes,
        move |abort| async move { initiate_set(&ports, &abort).await },
    )?;
    Ok(MongoSet {
        url: format!("mongodb://{}/?replicaSet={REPLICA_SET}", hosts.join(",")),
        members,
    })
}

fn hosts(ports: &[u16]) -> Vec<String> {
    ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect()
}

/// Spawns member `name` on `port` (a free one if `None`) and waits until it listens.
fn spawn_member(
    name: &str,
    tools: &Tools,
    cache_size_gb: f64,
    files: &ServerFiles,
    port: Option<u16>,
) -> Result<(Supervised, u16)> {
    let spawn = |port| {
        let cmd = mongod_command(tools, cache_size_gb, &files.dir, &files.log_path, port)?;
        Supervised::spawn_with_cleanup(name, cmd, STOP_GRACE, files.cleanup_dir())
    };
    let ready = |process: &mut Supervised, port| wait_for_port(process, port, LISTEN_TIMEOUT);
    start_on_port(port, &files.log_path, spawn, ready)
        .with_context(|| format!("failed to start {name}"))
}

async fn initiate_set(ports: &[u16], abort: &AtomicBool) -> Result<()> {
    let client = direct_client(ports[0]).await?;
    let admin = client.database("admin");
    let result = async {
        let hosts = hosts(ports);
        let members: Vec<Document> = hosts
            .iter()
            .enumerate()
            .map(|(id, host)| doc! { "_id": id as i32, "host": host })
            .collect();
        let config = doc! { "_id": REPLICA_SET, "members": members };
        match admin.run_command(doc! { "replSetInitiate": config }).await {
            Ok(_) => {}
            Err(err) if command_code(&err) == Some(ALREADY_INITIALIZED) => {
                same_members(&admin, &hosts).await?;
            }
            Err(err) => return Err(err).context("replSetInitiate failed"),
        }
        wait_until_settled(&admin, abort).await
    }
    .await;
    client.shutdown().immediate(true).await;
    result
}

/// Fails unless the set found in the members' data has exactly `hosts` as its members.
async fn same_members(admin: &Database, hosts: &[String]) -> Result<()> {
    let reply = admin
        .run_command(doc! { "replSetGetConfig": 1 })
        .await
        .context("replSetGetConfig failed")?;
    let stored: Vec<String> = reply
        .get_document("config")
        .and_then(|config| config.get_array("members"))
        .context("the stored replica set config has no members")?
        .iter()
        .filter_map(|member| Some(member.as_document()?.get_str("host").ok()?.to_owned()))
        .collect();
    ensure!(
        stored == hosts,
        "the data dirs hold a replica set of {stored:?}, not {hosts:?}: start it on the same \
         ports, or remove the data dirs"
    );
    Ok(())
}

/// Waits until one member is primary and every other a secondary, as the first one sees it.
async fn wait_until_settled(admin: &Database, abort: &AtomicBool) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match admin.run_command(doc! { "replSetGetStatus": 1 }).await {
            Ok(status) => {
                let states: Vec<String> = status
                    .get_array("members")
                    .map(|members| {
                        members
                            .iter()
                            .filter_map(|member| {
                                Some(member.as_document()?.get_str("stateStr").ok()?.to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let primaries = states.iter().filter(|state| *state == "PRIMARY").count();
                let others_secondary = states
                    .iter()
                    .all(|state| state == "PRIMARY" || state == "SECONDARY");
                if primaries == 1 && others_secondary {
                    return Ok(());
                }
                // A new set elects its first primary only after an election timeout (10 s);
                // asking the first member to stand at once saves that wait.
                if primaries == 0 && states.iter().all(|state| state == "SECONDARY") {
                    let _ = admin.run_command(doc! { "replSetStepUp": 1 }).await;
                }
                format!("member states {states:?}")
            }
            Err(err) => format!("{err}"),
        };
        if abort.load(Ordering::Relaxed) {
            bail!("aborted");
        }
        if Instant::now() >= deadline {
            bail!("the replica set did not settle within {SETTLE_TIMEOUT:?}; last: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the member on `port` says it is the primary or a secondary.
async fn wait_for_member(port: u16, abort: &AtomicBool) -> Result<()> {
    let client = direct_client(port).await?;
    let admin = client.database("admin");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let result = loop {
        let last = match admin.run_command(doc! { "hello": 1 }).await {
            Ok(reply) => {
                let member = reply.get_bool("isWritablePrimary").unwrap_or(false)
                    || reply.get_bool("secondary").unwrap_or(false);
                if member {
                    break Ok(());
                }
                format!("{reply}")
            }
            Err(err) => format!("{err}"),
        };
        if abort.load(Ordering::Relaxed) {
            break Err(anyhow::anyhow!("aborted"));
        }
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "the member on port {port} did not rejoin within {SETTLE_TIMEOUT:?}; last hello: {last}"
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    client.shutdown().immediate(true).await;
    result
}
