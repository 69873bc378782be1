//! Project automation, run as `cargo xtask <command>`.

mod api;
mod cmd;
mod postman;
mod stack;
mod test;
mod up;
mod watchdog;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Project automation for the ticketing workspace.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download mongod and nats-server into .tools/bin (once) and print where they are.
    Provision,
    /// Build and run the whole marketplace locally, with its own MongoDB and NATS.
    Up(up::UpArgs),
    /// Run every check CI runs: fmt, deployment check, clippy, tests, newman, schemathesis.
    Test(test::TestArgs),
    /// Regenerate postman/ (collection and environments) from the services' OpenAPI documents.
    Postman(postman::Args),
    /// Run the Postman collection (newman) and schemathesis against a stack of their own.
    Api,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Provision => provision().map(|()| ExitCode::SUCCESS),
        Command::Up(args) => up::run(&args),
        Command::Test(args) => test::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Postman(args) => postman::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Api => api_checks().map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        eprintln!("xtask: error: {err:#}");
        ExitCode::FAILURE
    })
}

/// `cargo xtask api`: what `cargo xtask test` runs last, on a `ticketing` built for it.
fn api_checks() -> Result<()> {
    let root = devenv::workspace_root();
    let exe = api::ticketing_exe(&root, &["build", "--package", "ticketing"])?;
    api::run(&root, &exe)
}

fn provision() -> Result<()> {
    let tools = devenv::ensure_tools(&devenv::workspace_root())?;
    println!("mongod:      {}", tools.mongod.display());
    println!("nats-server: {}", tools.nats_server.display());
    Ok(())
}
