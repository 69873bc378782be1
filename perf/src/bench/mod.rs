//! `ticketing bench`: throughput and latency of the public endpoints of a running stack, next
//! to the limits of the machine it runs on, measured in the same run.
//!
//! Each HTTP scenario runs `--clients` keep-alive connections closed-loop (a client sends its
//! next request when the last one's body has been read) for a warm-up, then a measured window;
//! latency is per request, from send until the whole body is read, and every non-2xx answer or
//! transport error is counted and reported by kind. The lag scenario runs open loop instead: a
//! fixed write rate whatever the answers ([`crate::lag`]).
//!
//! Each scenario is reported as a fraction of the limit that bounds it (the lowest of the
//! limits listed when there are several):
//!
//! | scenario | what one request does | limit |
//! |---|---|---|
//! | `currentuser` | read the cookie, verify the HS256 JWT, write JSON | `bare-handler`: the same handler without the stack's layers, in a process of its own (`ticketing bare-handler`) |
//! | `signin` | find the user, argon2id-verify the password, sign a JWT | `argon2-verify` |
//! | `create-ticket` | insert the ticket with its event inside it; the outbox relay publishes it and removes it | `mongo-insert+publish`, `mongo-insert`, `jetstream-publish` |
//! | `update-ticket` | the same as an update of the caller's ticket | the same |
//! | `list-tickets` | a page of 100 unreserved tickets: one query, or memory when no ticket changed since | `mongo-find-one` |
//! | `create-cancel-order` | `POST /api/orders` and `DELETE /api/orders/:id` each count: one write of the order with its event inside it | the same as `create-ticket` |
//! | `lag` | a ticket update until orders' replica shows it | `replication-floor`: at the same rate, an insert, its publish, a consumer's insert into a replica, seen on its change stream |
//!
//! The limits do strictly less than the endpoints (one insert without an event inside, one
//! find by id, one publish), so a fraction near 1 is out of reach for the writes; the fraction
//! says how much of the machine's ceiling the stack's own code costs. The lag is a latency at
//! a fixed rate, so it is compared by p99 instead: its p99 as a multiple of the floor's.

mod bare;
mod cost;
mod http;
pub(crate) mod limits;
mod load;
pub mod report;
mod scenarios;
mod settle;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};

pub use self::bare::serve_bare_handler;
use self::http::{Conn, Target};
use self::load::{Measured, Timing, closed_loop};
use self::report::{Params, Results, Row, Versus};
use self::scenarios::Fixture;
pub use self::scenarios::Scenario;
use self::settle::Backlog;
use crate::lag::floor;
use crate::lag::report::LagReport;
use crate::lag::schedule::OpenLoop;
use crate::lag::session::Session;
use crate::throwaway::StackNats;

/// Arguments of `ticketing bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the stack serves the ingress's routes (plain http).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Concurrent keep-alive connections per scenario and limit.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured seconds per scenario and limit.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured warm-up seconds before each.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Scenarios to run, comma-separated; all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// Ticket writes per second in the lag scenario (open loop).
    #[arg(long, default_value_t = 500)]
    pub lag_rate: u32,
    /// Unreserved tickets that must exist for list-tickets; the missing ones are created.
    #[arg(long, default_value_t = 100)]
    pub list_tickets: usize,
    /// Measure the limits (the default).
    #[arg(long, overrides_with = "no_limits")]
    pub limits: bool,
    /// Skip the limits.
    #[arg(long, overrides_with = "limits")]
    pub no_limits: bool,
    /// The stack's MongoDB, for the limits (`cargo xtask up` prints it).
    #[arg(long, env = "MONGO_URL")]
    pub mongo_url: Option<String>,
    /// The stack's NATS, for the limits and for draining the event backlog between scenarios
    /// (`cargo xtask up` prints it).
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// The stack's event namespace.
    #[arg(long, env = "EVENT_NAMESPACE", default_value = "ticketing")]
    pub event_namespace: String,
    /// The orders service's database on `--mongo-url`, whose replica the lag scenario watches.
    #[arg(long, default_value = "orders")]
    pub orders_db: String,
    /// Where to write the JSON results [default: bench-results/<start time>.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Earlier results to print the change against.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// The `ticketing` executable, which serves the bare-handler limit; this program when unset.
    #[arg(skip)]
    pub ticketing_exe: Option<PathBuf>,
}

impl Args {
    /// Arguments with every default, against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            clients: 64,
            duration: 10.0,
            warmup: 2.0,
            scenarios: Vec::new(),
            lag_rate: 500,
            list_tickets: 100,
            limits: false,
            no_limits: false,
            mongo_url: None,
            nats_url: None,
            event_namespace: "ticketing".to_owned(),
            orders_db: "orders".to_owned(),
            out: None,
            compare: None,
            ticketing_exe: None,
        }
    }

    fn selected(&self) -> Vec<Scenario> {
        Scenario::ALL
            .into_iter()
            .filter(|s| self.scenarios.is_empty() || self.scenarios.contains(s))
            .collect()
    }

    fn timing(&self) -> Timing {
        Timing {
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
        }
    }

    /// The lag's writes (and the replication floor's): `--lag-rate` for `--duration`.
    fn lag_schedule(&self) -> OpenLoop {
        OpenLoop {
            rate: self.lag_rate,
            duration: Duration::from_secs_f64(self.duration),
        }
    }
}

/// Prints on stderr what the bench is doing, when it shows progress.
struct Log(bool);

impl Log {
    fn say(&self, what: &str) {
        if self.0 {
            eprintln!("bench: {what}");
        }
    }
}

/// Runs the bench, writes the JSON results, and returns them with the file's path.
/// `progress` shows progress bars and steps on the terminal.
pub async fn run(args: &Args, progress: bool) -> anyhow::Result<(Results, PathBuf)> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.duration > 0.0, "--duration must be positive");
    ensure!(args.warmup >= 0.0, "--warmup must not be negative");
    ensure!(args.lag_rate > 0, "--lag-rate must be positive");
    let with_limits = !args.no_limits;
    let (mongo_url, nats_url) = match (with_limits, &args.mongo_url, &args.nats_url) {
        (false, _, nats) => (None, nats.clone()),
        (true, Some(mongo), Some(nats)) => (Some(mongo.clone()), Some(nats.clone())),
        (true, _, _) => bail!(
            "the limits need the stack's MONGO_URL and NATS_URL (`cargo xtask up` prints both; \
             --mongo-url / --nats-url work too); --no-limits skips them"
        ),
    };
    let log = Log(progress);
    let selected = args.selected();
    let timing = args.timing();
    let started_at = mongodb::bson::DateTime::now()
        .try_to_rfc3339_string()
        .context("format the start time")?;
    let mut results = Results {
        format: report::FORMAT,
        started_at,
        git: report::git(),
        machine: report::machine(),
        params: Params {
            url: args.url.clone(),
            clients: args.clients,
            duration_secs: args.duration,
            warmup_secs: args.warmup,
            lag_rate: args.lag_rate,
            list_tickets: args.list_tickets,
            scenarios: selected.iter().map(|s| s.name().to_owned()).collect(),
            limits: with_limits,
        },
        scenarios: Vec::new(),
        limits: Vec::new(),
    };

    let target = Target::resolve(&args.url).await?;
    Conn::new(target.clone())
        .call(Method::GET, "/api/users/currentuser", None, None)
        .await
        .with_context(|| format!("no stack answering at {}", args.url))?;
    let backlog = match &nats_url {
        Some(url) => {
            let backlog = Backlog::connect(url, &args.event_namespace, &args.url).await?;
            if !backlog.sees_outboxes() {
                log.say(&format!(
                    "no outbox gauge at {}/metrics: the drain between scenarios waits for the \
                     consumers only",
                    args.url
                ));
            }
            Some(backlog)
        }
        None => {
            log.say("NATS_URL unset: the event backlog is not drained between scenarios");
            None
        }
    };

    let bar = |name: &str| load::bar(name, timing.duration, progress);
    // The limits' throwaway streams are replicated as the stack's event stream is.
    let stack_nats = match (&mongo_url, &nats_url) {
        (Some(_), Some(url)) => Some(StackNats::find(url, &args.event_namespace).await?),
        _ => None,
    };
    if let (Some(mongo_url), Some(nats)) = (&mongo_url, &stack_nats) {
        log.say(&format!(
            "measuring the limits (streams on {} server(s))",
            nats.replicas
        ));
        let exe = match &args.ticketing_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("find this program")?,
        };
        results.limits = measure_limits(&exe, mongo_url, nats, args.clients, timing, &bar).await?;
    }

    let probe = cost::CostProbe::new(&target, args.mongo_url.as_deref()).await?;
    let fixture = Fixture::prepare(
        &target,
        &selected,
        args.clients,
        args.list_tickets,
        |what| log.say(what),
    )
    .await?;
    for scenario in selected {
        let settle_ms = match &backlog {
            Some(backlog) => {
                let (waited, left) = backlog.drain().await?;
                // A scenario measured over the previous one's backlog would mix the two.
                anyhow::ensure!(
                    left == 0,
                    "{left} events still pending after {waited:?}: the stack did not drain \
                     the events of the scenario before {}",
                    scenario.name()
                );
                Some(waited.as_millis() as u64)
            }
            None => None,
        };
        let mut row = match scenario {
            Scenario::Lag => {
                // Measured right before the lag, not with the other limits: the servers'
                // state (a checkpoint still flushing the write scenarios' data) moves both.
                if let (Some(mongo_url), Some(nats)) = (&mongo_url, &stack_nats) {
                    let floor = replication_floor(args, mongo_url, nats, progress).await?;
                    results.limits.push(floor);
                }
                lag(args, progress).await?
            }
            _ => {
                let bar = bar(scenario.name());
                let workers = fixture.workers(scenario, &target, args.clients);
                let start = std::time::Instant::now() + timing.warmup;
                let (measured, window) = tokio::join!(
                    closed_loop(workers, timing, &bar),
                    probe.window(start, start + timing.duration)
                );
                bar.finish();
                let mut row = Row::new(scenario.name(), &measured);
                cost::charge(&mut row, window);
                row
            }
        };
        match scenario {
            Scenario::CreateCancelOrder => {
                row.note =
                    Some("a request is a POST /api/orders or a DELETE /api/orders/:id".into());
            }
            Scenario::Buy => {
                row.note = Some(
                    "a request is one purchase: POST /api/orders, POST /api/payments, then \
                     GET /api/orders/:id until complete"
                        .into(),
                );
            }
            _ => {}
        }
        row.settle_ms = settle_ms;
        row.versus = versus(&row, scenario, &results.limits);
        results.scenarios.push(row);
    }
    results.machine.load_after = report::load_average();

    let path = args
        .out
        .clone()
        .unwrap_or_else(|| report::default_path(&results.started_at));
    results.write(&path)?;
    Ok((results, path))
}

/// The limits that bound `scenario` (see the module's table).
fn bounds(scenario: Scenario) -> &'static [&'static str] {
    match scenario {
        Scenario::CurrentUser => &[bare::BARE_HANDLER],
        Scenario::Signin => &[limits::ARGON2_VERIFY],
        Scenario::CreateTicket
        | Scenario::UpdateTicket
        | Scenario::CreateCancelOrder
        | Scenario::Buy => &[
            limits::INSERT_PUBLISH,
            limits::MONGO_INSERT,
            limits::JETSTREAM_PUBLISH,
        ],
        Scenario::ListTickets => &[limits::MONGO_FIND],
        Scenario::Lag => &[limits::REPLICATION_FLOOR],
    }
}

/// The lowest of the scenario's limits, and its rate as a fraction of it; for the lag, a
/// latency at a fixed rate, its p99 as a multiple of the floor's.
fn versus(row: &Row, scenario: Scenario, limits: &[Row]) -> Option<Versus> {
    let limit = limits
        .iter()
        .filter(|limit| bounds(scenario).contains(&limit.name.as_str()))
        .min_by(|a, b| a.rps.total_cmp(&b.rps))?;
    if scenario == Scenario::Lag {
        let floor = limit.latency_ms.p99;
        return (floor > 0.0).then(|| Versus {
            limit: limit.name.clone(),
            limit_rps: limit.rps,
            limit_p99_ms: Some(floor),
            fraction: row.latency_ms.p99 / floor,
        });
    }
    (limit.rps > 0.0).then(|| Versus {
        limit: limit.name.clone(),
        limit_rps: limit.rps,
        limit_p99_ms: None,
        fraction: row.rps / limit.rps,
    })
}

async fn measure_limits(
    ticketing_exe: &std::path::Path,
    mongo_url: &str,
    nats: &StackNats,
    clients: usize,
    timing: Timing,
    bar: &impl Fn(&str) -> ProgressBar,
) -> anyhow::Result<Vec<Row>> {
    let finished = |name: &str, measured: Measured, note: &str| {
        let mut row = Row::new(name, &measured);
        row.note = Some(note.to_owned());
        row
    };
    let mut rows = Vec::new();
    let b = bar(bare::BARE_HANDLER);
    let mut row = bare::limit(ticketing_exe, clients, timing, &b).await?;
    b.finish();
    row.note = Some("auth's currentuser handler alone on axum, in a process of its own".to_owned());
    rows.push(row);
    let (insert, find) = limits::mongo(mongo_url, clients, timing, |name| bar(name)).await?;
    rows.push(finished(
        limits::MONGO_INSERT,
        insert,
        "insert_one of a ticket-sized document, no transaction, the services' pool size",
    ));
    rows.push(finished(
        limits::MONGO_FIND,
        find,
        "find_one by _id among 1000 documents",
    ));
    let b = bar(limits::JETSTREAM_PUBLISH);
    let measured = limits::jetstream_publish(nats, clients, timing, &b).await?;
    b.finish();
    rows.push(finished(
        limits::JETSTREAM_PUBLISH,
        measured,
        "publish with a Nats-Msg-Id to a file stream, awaiting each ack",
    ));
    let b = bar(limits::INSERT_PUBLISH);
    let measured = limits::insert_publish(mongo_url, nats, clients, timing, &b).await?;
    b.finish();
    rows.push(finished(
        limits::INSERT_PUBLISH,
        measured,
        "insert_one, then publish its event and await the ack (no outbox)",
    ));
    let b = bar(limits::ARGON2_VERIFY);
    let measured = limits::argon2_verify(clients, timing, &b).await?;
    b.finish();
    rows.push(finished(
        limits::ARGON2_VERIFY,
        measured,
        "argon2id (19 MiB, t=2, p=1) verifications through auth's hasher (two per core at once, pooled memory)",
    ));
    Ok(rows)
}

/// A progress bar counting the lag's (or the floor's) writes.
fn writes_bar(name: &str, args: &Args, progress: bool) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let writes = args.lag_schedule().writes() as u64;
    let bar = ProgressBar::new(writes).with_prefix(name.to_owned());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} writes  {per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A lag report as a measured window: every write a request, every lag its latency.
fn lag_measured(report: &LagReport, seconds: f64, failed_write: &str) -> Measured {
    let mut measured = Measured::empty(seconds);
    measured.requests = report.writes as u64;
    for lag in &report.lags {
        measured
            .latency
            .saturating_record(lag.as_micros().max(1) as u64);
    }
    for _ in 0..report.failed_writes {
        measured.add_error(failed_write);
    }
    for _ in report.failed_writes..report.failures {
        measured.add_error("not visible in the replica within 5 s");
    }
    measured
}

/// The `replication-floor` limit at `--lag-rate` for `--duration`.
async fn replication_floor(
    args: &Args,
    mongo_url: &str,
    nats: &StackNats,
    progress: bool,
) -> anyhow::Result<Row> {
    let bar = writes_bar(limits::REPLICATION_FLOOR, args, progress);
    let report = floor::replication_floor(mongo_url, nats, args.lag_schedule(), &bar).await?;
    bar.finish();
    let measured = lag_measured(&report, args.duration, "insert or publish failed");
    let mut row = Row::new(limits::REPLICATION_FLOOR, &measured);
    row.note = Some(format!(
        "open loop at {} writes/s: insert_one returned → its event published and acked, \
         consumed, inserted into a replica collection, seen on its change stream",
        args.lag_rate
    ));
    Ok(row)
}

/// The lag scenario through `ticketing lag`'s measurement: open loop at `--lag-rate`.
async fn lag(args: &Args, progress: bool) -> anyhow::Result<Row> {
    let mut session = Session::signup(&args.url, "bench-lag").await?;
    // With the stack's MongoDB known, versions are seen landing on the replica's change
    // stream; otherwise the orders API is polled, which adds load of its own.
    if let Some(mongo_url) = &args.mongo_url {
        session = session.watching_replica(mongo_url, &args.orders_db).await?;
    }
    let session = std::sync::Arc::new(session);
    let ids = session.seed(50).await?;
    let bar = writes_bar(Scenario::Lag.name(), args, progress);
    let report = session.measure(&ids, args.lag_schedule(), &bar).await;
    bar.finish();
    session.check_watch()?;
    // Every writer has finished with the session by now.
    if let Ok(session) = std::sync::Arc::try_unwrap(session) {
        session.close().await;
    }
    let measured = lag_measured(&report, args.duration, "ticket update failed");
    let mut row = Row::new(Scenario::Lag.name(), &measured);
    let seen = if args.mongo_url.is_some() {
        "committed in orders' replica (its change stream)"
    } else {
        "visible in GET /api/orders/tickets/:id (polled every 2 ms)"
    };
    row.note = Some(format!(
        "open loop at {} writes/s; latency is the replication lag: PUT answered → new \
         version {seen}",
        args.lag_rate
    ));
    Ok(row)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn scenarios_parse_by_their_names_and_default_to_all_in_order() {
        let cli = Cli::try_parse_from(["bench", "--scenarios", "lag,currentuser"]).unwrap();
        assert_eq!(cli.args.selected(), [Scenario::CurrentUser, Scenario::Lag]);
        let cli = Cli::try_parse_from(["bench"]).unwrap();
        assert_eq!(cli.args.selected(), Scenario::ALL);
        for scenario in Scenario::ALL {
            let cli = Cli::try_parse_from(["bench", "--scenarios", scenario.name()]).unwrap();
            assert_eq!(cli.args.selected(), [scenario]);
        }
    }

    #[test]
    fn limits_are_on_unless_switched_off() {
        let cli = Cli::try_parse_from(["bench"]).unwrap();
        assert!(!cli.args.no_limits);
        let cli = Cli::try_parse_from(["bench", "--no-limits"]).unwrap();
        assert!(cli.args.no_limits);
        let cli = Cli::try_parse_from(["bench", "--no-limits", "--limits"]).unwrap();
        assert!(!cli.args.no_limits, "the last one wins");
    }

    #[test]
    fn a_scenario_is_compared_with_the_lowest_of_its_limits() {
        let row = |name: &str, rps: f64| {
            let mut row = Row::new(name, &Measured::empty(1.0));
            row.rps = rps;
            row
        };
        let limits = [
            row(limits::MONGO_INSERT, 4000.0),
            row(limits::JETSTREAM_PUBLISH, 2000.0),
            row(bare::BARE_HANDLER, 80000.0),
        ];
        let v = versus(
            &row("create-ticket", 1000.0),
            Scenario::CreateTicket,
            &limits,
        )
        .unwrap();
        assert_eq!(v.limit, limits::JETSTREAM_PUBLISH);
        assert!((v.fraction - 0.5).abs() < 1e-9);
        let v = versus(&row("currentuser", 40000.0), Scenario::CurrentUser, &limits).unwrap();
        assert_eq!(v.limit, bare::BARE_HANDLER);
        assert!(versus(&row("lag", 500.0), Scenario::Lag, &limits).is_none());

        let lag = |name: &str, p99: f64| {
            let mut row = row(name, 500.0);
            row.latency_ms.p99 = p99;
            row
        };
        let limits = [
            lag(limits::REPLICATION_FLOOR, 20.0),
            row(limits::MONGO_INSERT, 400.0),
        ];
        let v = versus(&lag("lag", 50.0), Scenario::Lag, &limits).unwrap();
        assert_eq!(v.limit, limits::REPLICATION_FLOOR);
        assert_eq!(v.limit_p99_ms, Some(20.0));
        assert!(
            (v.fraction - 2.5).abs() < 1e-9,
            "the p99 over the floor's: {v:?}"
        );
        assert!(versus(&row("signin", 50.0), Scenario::Signin, &limits).is_none());
    }
}
