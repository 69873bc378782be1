//! The real `mongod` and `nats-server` of one test binary, started on first use, and names no
//! concurrent test shares.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use common::config::Env;

/// Connection strings of the servers this test binary uses.
#[derive(Debug)]
pub struct Servers {
    /// A MongoDB replica set primary.
    pub mongo_url: String,
    /// A NATS server with JetStream.
    pub nats_url: String,
    // Held for the life of the process; the watchdogs stop them at exit.
    _mongo: Option<devenv::Mongo>,
    _nats: Option<devenv::Nats>,
}

/// The servers of this test binary, started on first use.
///
/// # Panics
/// When the servers cannot be provisioned or started: no test can run without them.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Result<Servers, String>> = OnceLock::new();
    let servers = SERVERS.get_or_init(|| start_servers().map_err(|e| format!("{e:#}")));
    match servers {
        Ok(servers) => servers,
        Err(error) => panic!("test servers unavailable: {error}"),
    }
}

fn start_servers() -> anyhow::Result<Servers> {
    let env = Env::process();
    let external_mongo = env.get("MONGO_URL");
    let external_nats = env.get("NATS_URL");
    let tools = if external_mongo.is_none() || external_nats.is_none() {
        Some(devenv::default_tools()?)
    } else {
        None
    };
    let (mongo_url, mongo) = match (external_mongo, &tools) {
        (Some(url), _) => (url, None),
        (None, Some(tools)) => {
            let mongo = devenv::start_mongo(tools, devenv::MongoOptions::default())?;
            (mongo.url.clone(), Some(mongo))
        }
        (None, None) => unreachable!("tools are provisioned when a server must be started"),
    };
    let (nats_url, nats) = match (external_nats, &tools) {
        (Some(url), _) => (url, None),
        (None, Some(tools)) => {
            let nats = devenv::start_nats(tools, devenv::NatsOptions::default())?;
            (nats.url.clone(), Some(nats))
        }
        (None, None) => unreachable!("tools are provisioned when a server must be started"),
    };
    Ok(Servers {
        mongo_url,
        nats_url,
        _mongo: mongo,
        _nats: nats,
    })
}

/// A name no other test of any concurrent run uses: for databases and event namespaces.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}
