//! `ticketing`: the all-in-one launcher (`ticketing up`) and the operator commands.

mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ticketing",
    version,
    about = "The ticketing marketplace, all services in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every service in this process and serves the ingress's routes on one address.
    Up(up::UpArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    match Cli::parse().command {
        Command::Up(args) => up::run(args).await,
    }
}
