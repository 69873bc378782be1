//! `cargo xtask up`: the whole marketplace on this machine, with a MongoDB and NATS of its own.

use std::env;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use devenv::{Mongo, MongoOptions, Nats, NatsOptions, Supervised};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cmd;

const APP_STOP_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `cargo xtask up`.
#[derive(Args)]
pub(crate) struct UpArgs {
    /// Build and run the release profile.
    #[arg(long)]
    release: bool,
    /// Port of the HTTP server on 127.0.0.1.
    #[arg(long, env = "TICKETING_PORT", default_value_t = 3000)]
    port: u16,
}

pub(crate) fn run(args: &UpArgs) -> Result<ExitCode> {
    let root = devenv::workspace_root();
    let tools = devenv::ensure_tools(&root)?;
    let profile = if args.release { "release" } else { "debug" };
    let mut build = cmd::cargo(&root);
    build.args(["build", "-p", "ticketing"]);
    if args.release {
        build.arg("--release");
    }
    cmd::run(&mut build)?;

    // From here on Ctrl-C is ours to handle, so even one that arrives while the servers start
    // ends in the orderly shutdown below. The servers and the app run in process groups of
    // their own, so the terminal's SIGINT reaches only us.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to build a tokio runtime")?;
    let mut signals = {
        let _context = runtime.enter();
        Signals::new()?
    };

    let data = root.join(".data");
    let (mongo_url, mongo) = match env_var("MONGO_URL") {
        Some(url) => (url, None),
        None => {
            let mongo = devenv::start_mongo(
                &tools,
                MongoOptions {
                    data_dir: Some(data.join("mongo")),
                    log_path: Some(data.join("mongo.log")),
                    ..MongoOptions::default()
                },
            )?;
            (mongo.url.clone(), Some(mongo))
        }
    };
    let (nats_url, nats) = match env_var("NATS_URL") {
        Some(url) => (url, None),
        None => {
            let nats = devenv::start_nats(
                &tools,
                NatsOptions {
                    store_dir: Some(data.join("nats")),
                    log_path: Some(data.join("nats.log")),
                    ..NatsOptions::default()
                },
            )?;
            (nats.url.clone(), Some(nats))
        }
    };
    print_banner(
        &root,
        &mongo_url,
        mongo.as_ref(),
        &nats_url,
        nats.as_ref(),
        args.port,
    );

    let exe = target_dir(&root).join(profile).join("ticketing");
    let mut app = crate::stack::ticketing_up(&exe, &mongo_url, &nats_url, args.port);
    // Payments never picks a gateway by itself: a laptop's stack says the local test gateway
    // unless Stripe (STRIPE_KEY) or another gateway was chosen.
    if env_var("PAYMENTS_GATEWAY").is_none() && env_var("STRIPE_KEY").is_none() {
        eprintln!("xtask: payments uses the local test gateway (PAYMENTS_GATEWAY=local)");
        app.env("PAYMENTS_GATEWAY", "local");
    }
    if env::var_os("RUST_LOG").is_none() {
        app.env("RUST_LOG", "info,ticketing=info");
    }
    let mut app = Supervised::spawn("ticketing", app, APP_STOP_GRACE)?;

    let mut code = match runtime.block_on(signals.wait_for(&mut app))? {
        Outcome::Exited(status) => {
            eprintln!("xtask: ticketing exited ({status}); stopping the servers");
            exit_code(status)
        }
        Outcome::Signal(name) => {
            eprintln!("xtask: {name}: stopping ticketing, then the servers");
            failure_if_err(app.stop())
        }
    };
    drop(app);
    if let Some(nats) = nats {
        code = worst(code, failure_if_err(nats.stop()));
    }
    if let Some(mongo) = mongo {
        code = worst(code, failure_if_err(mongo.stop()));
    }
    Ok(code)
}

fn print_banner(
    root: &Path,
    mongo_url: &str,
    mongo: Option<&Mongo>,
    nats_url: &str,
    nats: Option<&Nats>,
    port: u16,
) {
    let rel = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mongo_where = mongo.map_or("external, from MONGO_URL".into(), |mongo| {
        format!(
            "data {}, log {}",
            rel(&mongo.data_dir),
            rel(&mongo.log_path)
        )
    });
    let nats_where = nats.map_or("external, from NATS_URL".into(), |nats| {
        format!(
            "store {}, log {}",
            rel(&nats.store_dir),
            rel(&nats.log_path)
        )
    });
    eprintln!();
    eprintln!("  mongo  {mongo_url}  ({mongo_where})");
    eprintln!("  nats   {nats_url}  ({nats_where})");
    eprintln!("  app    http://127.0.0.1:{port}  (Ctrl-C stops everything)");
    eprintln!();
}

/// How the wait for the app ended.
enum Outcome {
    Exited(ExitStatus),
    Signal(&'static str),
}

struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Must be called inside the runtime's context.
    fn new() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("failed to handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("failed to handle SIGTERM")?,
        })
    }

    /// Waits until the app exits or a signal arrives; std has no async wait, so the app is polled.
    async fn wait_for(&mut self, app: &mut Supervised) -> Result<Outcome> {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return Ok(Outcome::Signal("SIGINT")),
                _ = self.terminate.recv() => return Ok(Outcome::Signal("SIGTERM")),
                _ = tick.tick() => {
                    if let Some(status) = app.try_wait()? {
                        return Ok(Outcome::Exited(status));
                    }
                }
            }
        }
    }
}

/// A set, non-empty, UTF-8 environment variable (services read theirs through `common`; xtask
/// only passes these through).
fn env_var(name: &str) -> Option<String> {
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

/// The shell's convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

fn failure_if_err(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn worst(current: ExitCode, next: ExitCode) -> ExitCode {
    if current == ExitCode::SUCCESS {
        next
    } else {
        current
    }
}
