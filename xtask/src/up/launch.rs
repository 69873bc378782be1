//! What both ways of `cargo xtask up` start from: the workspace, its servers' executables, the
//! built `ticketing` launcher and the address to serve on.

use std::env;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use devenv::Tools;

/// What `cargo xtask up` runs.
pub(super) struct Launch {
    pub(super) root: PathBuf,
    pub(super) tools: Tools,
    /// The `ticketing` executable just built, and the environment its processes share.
    pub(super) app: App,
    /// The one address's port on 127.0.0.1.
    pub(super) port: u16,
}

impl Launch {
    pub(super) fn new(root: PathBuf, tools: Tools, release: bool, port: u16) -> Self {
        let profile = if release { "release" } else { "debug" };
        let exe = target_dir(&root).join(profile).join("ticketing");
        Self {
            root,
            tools,
            app: App {
                exe,
                env: Vec::new(),
            },
            port,
        }
    }

    /// `path` relative to the workspace, for messages.
    pub(super) fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// The `ticketing` launcher with the environment every service of `cargo xtask up` shares.
#[derive(Clone)]
pub(super) struct App {
    pub(super) exe: PathBuf,
    /// What the payment gateway needs (`gateway.rs`).
    pub(super) env: Vec<(&'static str, String)>,
}

impl App {
    /// `<exe> <args>` with plain HTTP cookies, the gateway's variables, and `info` logs unless
    /// `RUST_LOG` says otherwise.
    pub(super) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .env("COOKIE_SECURE", "false")
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        if env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,ticketing=info");
        }
        command
    }
}

/// Sends the command's output to the end of the file at `log`.
pub(super) fn log_to(command: &mut Command, log: &Path) -> Result<()> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("failed to open {}", log.display()))?;
    command
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file));
    Ok(())
}

/// A set, non-empty, UTF-8 environment variable (services read theirs through `common`; xtask
/// only passes these through).
pub(super) fn env_var(name: &str) -> Option<String> {
    env::var_os(name)?
        .into_string()
        .ok()
        .filter(|value| !value.is_empty())
}

fn target_dir(root: &Path) -> PathBuf {
    // A relative CARGO_TARGET_DIR is relative to where cargo runs, which is the root here.
    env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| root.join("target"), |dir| root.join(dir))
}
