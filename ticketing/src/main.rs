//! `ticketing`: the all-in-one launcher (`ticketing up`) and the operator commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use perf::{bench, catchup, lag, saga};
use ticketing::{concurrency, dlq, ingress, openapi, tail, up};

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
    /// Runs every service (or those named by --services) in this process and serves the
    /// ingress's routes on one address.
    Up(up::UpArgs),
    /// Serves the ingress's routes on one address in front of several processes of each
    /// service (`ticketing up --services …`), round-robin, as `cargo xtask up --ha` runs them.
    Ingress(ingress::IngressArgs),
    /// Creates tickets and updates them twice, in parallel, then checks that every ticket and
    /// its replica in orders converged (price 15, version 2).
    ConcurrencyTest(concurrency::Args),
    /// Measures replication lag (ticket update → visible in the orders replica) at a steady rate.
    Lag(lag::Args),
    /// Measures req/s, latency percentiles and errors of the public endpoints under load, next
    /// to this machine's limits (MongoDB, JetStream, argon2, a bare handler) measured in the
    /// same run; writes the results as JSON.
    Bench(bench::Args),
    /// Serves the bench's bare-handler limit (currentuser's handler without the stack's
    /// layers) on its own, for comparing the stack with it under another load generator (wrk).
    BareHandler {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:3401")]
        listen: std::net::SocketAddr,
        /// Stop when standard input ends (how the bench runs it: a pipe from the bench).
        #[arg(long, hide = true)]
        until_stdin_closes: bool,
    },
    /// Measures how fast the orders replica catches up on a backlog of ticket events (publishes
    /// the backlog into a namespace of its own, then starts the orders service's listeners).
    Catchup(catchup::Args),
    /// Measures how late expirations land and how long payments take (run against a stack
    /// with a short ORDER_EXPIRATION_SECONDS).
    SagaBench(saga::Args),
    /// Inspects the event stream.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Lists dead letters with why they were dead-lettered, and replays them once the cause is
    /// fixed.
    Dlq {
        #[command(subcommand)]
        command: dlq::Command,
    },
    /// Prints the public services' OpenAPI documents as one JSON object, under the names
    /// auth, tickets, orders and payments (what `cargo xtask postman` reads).
    Openapi,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Prints events as they are published.
    Tail(tail::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    common::install_tls_provider();
    match &cli.command {
        Command::Up(_) => common::telemetry::init("ticketing"),
        Command::Ingress(_) => common::telemetry::init("ingress"),
        _ => {}
    }
    match cli.command {
        Command::Up(args) => up::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Ingress(args) => ingress::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::ConcurrencyTest(args) => {
            let report = concurrency::run(&args, true).await?;
            println!("{report}");
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Lag(args) => {
            println!("{}", lag::run(&args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            // A bad file to compare with fails before the run, not after it.
            let old = args
                .compare
                .as_deref()
                .map(bench::report::Results::read)
                .transpose()?;
            let (results, path) = bench::run(&args, true).await?;
            println!("{}", bench::report::table(&results));
            if let Some(old) = old {
                println!("{}", bench::report::compare(&old, &results));
            }
            println!("results: {}", path.display());
            Ok(if results.errors() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::BareHandler {
            listen,
            until_stdin_closes,
        } => bench::serve_bare_handler(listen, until_stdin_closes)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Catchup(args) => {
            let report = catchup::run(&args).await?;
            println!("{report}");
            Ok(if report.redelivered == 0 && report.dead_letters == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::SagaBench(args) => {
            let report = saga::run(&args).await?;
            println!("{report}");
            Ok(if report.failures == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Events {
            command: EventsCommand::Tail(args),
        } => tail::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Dlq { command } => dlq::run(&command).await,
        Command::Openapi => openapi::run().map(|()| ExitCode::SUCCESS),
    }
}
