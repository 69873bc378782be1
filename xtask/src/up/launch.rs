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
    /// The `ticketing` executable just built.
    pub(super) exe: PathBuf,
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
            exe,
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

/// `<exe> <args>` (the `ticketing` launcher) with the environment every service of `cargo
/// xtask up` shares: plain HTTP cookies, the local test gateway unless another was chosen,
/// and `info` logs unless `RUST_LOG` says otherwise.
pub(super) fn ticketing(exe: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(exe);
    command.args(args).env("COOKIE_SECURE", "false");
    // Payments never picks a gateway by itself: a laptop's stack says the local test gateway
    // unless Stripe (STRIPE_KEY) or another gateway was chosen.
    if env_var("PAYMENTS_GATEWAY").is_none() && env_var("STRIPE_KEY").is_none() {
        command.env("PAYMENTS_GATEWAY", "local");
    }
    if env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info,ticketing=info");
    }
    command
}

/// Says which payment gateway the services use, once.
pub(super) fn say_gateway() {
    if env_var("PAYMENTS_GATEWAY").is_none() && env_var("STRIPE_KEY").is_none() {
        eprintln!("xtask: payments uses the local test gateway (PAYMENTS_GATEWAY=local)");
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
