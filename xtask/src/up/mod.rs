//! `cargo xtask up`: the whole marketplace on this machine, with a MongoDB and NATS of its own
//! (`single.rs`), or as a cluster (`--ha`, `ha.rs`); whatever of it dies is started again.

mod gateway;
mod ha;
mod launch;
mod single;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use devenv::Supervisor;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cmd;
use launch::Launch;

/// Arguments of `cargo xtask up`.
#[derive(Args)]
pub(crate) struct UpArgs {
    /// Build and run the release profile.
    #[arg(long)]
    release: bool,
    /// Port of the HTTP server on 127.0.0.1.
    #[arg(long, env = "TICKETING_PORT", default_value_t = 3000)]
    port: u16,
    /// Run as a cluster: a 3-server NATS JetStream cluster, a 3-member MongoDB replica set,
    /// and every service as two processes behind the one address.
    #[arg(long)]
    ha: bool,
}

/// How often the supervisor looks for something that died.
const CHECK_EVERY: Duration = Duration::from_millis(200);

pub(crate) fn run(args: &UpArgs) -> Result<ExitCode> {
    let root = devenv::workspace_root();
    let tools = devenv::ensure_tools(&root)?;
    let mut build = cmd::cargo(&root);
    build.args(["build", "-p", "ticketing"]);
    if gateway::wants_fake() {
        build.args([
            "-p",
            "test-support",
            "--bin",
            "ticketing",
            "--bin",
            "fake-stripe",
        ]);
    }
    if args.release {
        build.arg("--release");
    }
    cmd::run(&mut build)?;

    // From here on Ctrl-C is ours to handle, so even one that arrives while the servers start
    // ends in the orderly shutdown below. The servers and the services run in process groups
    // of their own, so the terminal's SIGINT reaches only us.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to build a tokio runtime")?;
    let mut signals = {
        let _context = runtime.enter();
        Signals::new()?
    };

    let mut launch = Launch::new(root, tools, args.release, args.port);
    let mut supervisor = Supervisor::new("xtask");
    let started = gateway::start(&launch, &mut supervisor).and_then(|env| {
        launch.app.env = env;
        if args.ha {
            ha::start(&launch, &mut supervisor)
        } else {
            single::start(&launch, &mut supervisor)
        }
    });
    if let Err(err) = started {
        // Whatever did start stops again; the error says what did not.
        let _ = supervisor.stop_all();
        return Err(err);
    }

    let signal = runtime.block_on(signals.wait(&mut supervisor));
    eprintln!("xtask: {signal}: stopping the services, then the servers");
    Ok(match supervisor.stop_all() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    })
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

    /// Keeps the supervisor checking until a signal arrives; returns its name.
    async fn wait(&mut self, supervisor: &mut Supervisor) -> &'static str {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.terminate.recv() => return "SIGTERM",
                _ = tick.tick() => supervisor.check(),
            }
        }
    }
}
