//! `ticketing lag`: replication lag under a steady write rate — the time from a ticket update's
//! response until the orders service's replica shows that version (0 when the replica had it
//! before the writer had its answer).
//!
//! The pieces depend one way: [`session`] writes and waits on [`watch`], [`floor`] measures the
//! same chain through the bare servers, both pace their writes with [`schedule`] and report a
//! [`report::LagReport`]; `bench` uses them and nothing here uses `bench`.

pub(crate) mod floor;
pub mod report;
pub(crate) mod schedule;
pub(crate) mod session;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;

use self::report::LagReport;
use self::schedule::OpenLoop;
use self::session::Session;
use crate::throwaway::StackNats;

/// Arguments of `ticketing lag`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the ingress's routes are served.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub base_url: String,
    /// Ticket updates per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// How long to write, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// How many tickets the updates rotate over.
    #[arg(long, default_value_t = 50)]
    pub tickets: usize,
    /// The orders service's MongoDB: when given, versions are seen on its replica's change
    /// stream as they land, instead of by polling the orders API, whose load would add to
    /// the lag it measures (`cargo xtask up` prints it).
    #[arg(long, env = "MONGO_URL")]
    pub mongo_url: Option<String>,
    /// The orders service's database on `--mongo-url`.
    #[arg(long, default_value = "orders")]
    pub orders_db: String,
    /// Measures the replication floor instead (`ticketing bench`'s `replication-floor`
    /// limit): the same rate through the bare servers at `--mongo-url` and `--nats-url`,
    /// without the stack.
    #[arg(long, requires_all = ["mongo_url", "nats_url"])]
    pub floor: bool,
    /// The stack's NATS, for `--floor`.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
}

/// Runs the measurement against a running stack.
pub async fn run(args: &Args) -> anyhow::Result<LagReport> {
    let schedule = OpenLoop {
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
    };
    if let (true, Some(mongo_url), Some(nats_url)) = (args.floor, &args.mongo_url, &args.nats_url) {
        let nats = StackNats::find(nats_url, "ticketing").await?;
        return floor::replication_floor(mongo_url, &nats, schedule, &ProgressBar::hidden()).await;
    }
    let mut session = Session::signup(&args.base_url, "lag").await?;
    if let Some(mongo_url) = &args.mongo_url {
        session = session.watching_replica(mongo_url, &args.orders_db).await?;
    }
    let session = Arc::new(session);
    let ids = session.seed(args.tickets).await?;
    let report = session
        .measure(&ids, schedule, &ProgressBar::hidden())
        .await;
    session.check_watch()?;
    // Every writer has finished with the session by now.
    if let Ok(session) = Arc::try_unwrap(session) {
        session.close().await;
    }
    Ok(report)
}
