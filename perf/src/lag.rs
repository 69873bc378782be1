//! `ticketing lag`: replication lag under a steady write rate — the time from a ticket update's
//! response until the orders service's replica shows that version (0 when the replica had it
//! before the writer had its answer).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use indicatif::ProgressBar;
use mongodb::bson::{Document, doc};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

/// Lag percentiles over every write.
#[derive(Debug, Default)]
pub struct LagReport {
    /// Updates sent.
    pub writes: usize,
    /// Updates that failed or never became visible within 5 s.
    pub failures: usize,
    /// Of those, updates that were not answered 2xx (or not at all within 10 s).
    pub failed_writes: usize,
    /// Sorted lags of the successful writes.
    pub lags: Vec<Duration>,
}

impl LagReport {
    /// The q-quantile (0.0–1.0) of the observed lags.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.lags.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.lags.len() - 1) as f64 * q).round() as usize;
        self.lags[index.min(self.lags.len() - 1)]
    }
}

impl fmt::Display for LagReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "writes:   {} ({} failed, {} not visible in 5 s)",
            self.writes,
            self.failed_writes,
            self.failures - self.failed_writes
        )?;
        write!(
            f,
            "lag:      p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0))
        )
    }
}

/// Why a write has no lag.
enum Failure {
    Write,
    NotVisible,
}

/// A signed-up writer of tickets and reader of the orders replica; `ticketing bench` measures
/// its lag scenario with it too.
pub(crate) struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
    replica: Option<ReplicaWatch>,
}

impl Session {
    /// Signs up a fresh user at `base`.
    pub(crate) async fn signup(base: &str, purpose: &str) -> anyhow::Result<Self> {
        common::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let base = base.trim_end_matches('/').to_owned();
        let cookie = crate::client::signup(&http, &base, purpose).await?;
        Ok(Self {
            http,
            base,
            cookie,
            replica: None,
        })
    }

    /// Stops watching the replica, if it did.
    pub(crate) async fn close(self) {
        if let Some(replica) = self.replica {
            replica.close().await;
        }
    }

    /// Fails when the replica's change stream ended during the measurement, which would
    /// report writes as never visible.
    pub(crate) fn check_watch(&self) -> anyhow::Result<()> {
        match self.replica.as_ref().and_then(ReplicaWatch::ended) {
            Some(why) => anyhow::bail!("the orders replica's change stream ended: {why}"),
            None => Ok(()),
        }
    }

    /// Sees versions land on the replica's change stream in `orders_db` at `mongo_url`
    /// rather than by polling the orders API.
    pub(crate) async fn watching_replica(
        mut self,
        mongo_url: &str,
        orders_db: &str,
    ) -> anyhow::Result<Self> {
        self.replica = Some(ReplicaWatch::start(mongo_url, orders_db).await?);
        Ok(self)
    }

    async fn replica_version(&self, id: &str) -> anyhow::Result<Option<i64>> {
        let response = self
            .http
            .get(format!("{}/api/orders/tickets/{id}", self.base))
            .send()
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = response.error_for_status()?.json().await?;
        Ok(body["version"].as_i64())
    }

    /// Polls the replica until it reaches `version`; returns when it did, or `None` after 5 s.
    async fn visible(&self, id: &str, version: i64) -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs(5);
        if let Some(replica) = &self.replica {
            return replica.visible(id, version, deadline).await;
        }
        while Instant::now() < deadline {
            if matches!(self.replica_version(id).await, Ok(Some(v)) if v >= version) {
                return Some(Instant::now());
            }
            // Polling adds load of its own: keep it light enough not to be what it measures.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }

    async fn update(&self, id: &str, price: u32) -> anyhow::Result<(i64, Instant)> {
        let response = self
            .http
            .put(format!("{}/api/tickets/{id}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .json(&json!({"title": "lag", "price": price}))
            .send()
            .await?;
        let at = Instant::now();
        let body: Value = response.error_for_status()?.json().await?;
        Ok((body["version"].as_i64().context("no version")?, at))
    }

    /// Creates `count` tickets and waits until the orders replica has each; returns their ids.
    pub(crate) async fn seed(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let created: Value = self
                .http
                .post(format!("{}/api/tickets", self.base))
                .header(reqwest::header::COOKIE, &self.cookie)
                .json(&json!({"title": "lag", "price": 1}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            ids.push(created["id"].as_str().context("no id")?.to_owned());
        }
        for id in &ids {
            self.visible(id, 0).await.context("initial replication")?;
        }
        Ok(ids)
    }

    /// Updates the tickets `ids` in turn at `rate` per second for `duration` — open loop: a
    /// write is sent on schedule whether or not earlier ones became visible — and measures
    /// each write's lag. `sent` advances by one per write.
    pub(crate) async fn measure(
        self: &Arc<Self>,
        ids: &[String],
        rate: u32,
        duration: Duration,
        sent: &ProgressBar,
    ) -> LagReport {
        let (total, mut ticker) = open_loop(rate, duration);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..total {
            ticker.tick().await;
            sent.inc(1);
            let session = self.clone();
            let id = ids[n % ids.len()].clone();
            tasks.spawn(async move {
                let update = session.update(&id, (n % 1000 + 1) as u32).await;
                let (version, written) = update.map_err(|_| Failure::Write)?;
                let seen = session.visible(&id, version).await;
                Ok(seen.ok_or(Failure::NotVisible)?.duration_since(written))
            });
        }
        let mut report = LagReport {
            writes: total,
            ..LagReport::default()
        };
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(lag)) => report.lags.push(lag),
                Ok(Err(Failure::Write)) => {
                    report.failures += 1;
                    report.failed_writes += 1;
                }
                Ok(Err(Failure::NotVisible)) | Err(_) => report.failures += 1,
            }
        }
        report.lags.sort_unstable();
        report
    }
}

/// How many writes `rate` a second for `duration` is, and the ticker that paces them. Open
/// loop: a tick missed while the runtime was busy fires at once, so the rate holds whatever
/// the answers.
pub(crate) fn open_loop(rate: u32, duration: Duration) -> (usize, tokio::time::Interval) {
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    (total, ticker)
}

/// When each version of each ticket landed in the orders replica, read from the replica's
/// change stream: no polling load on the system being measured.
pub(crate) struct ReplicaWatch {
    client: mongodb::Client,
    seen: Arc<Seen>,
    follower: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    tickets: std::sync::Mutex<HashMap<String, Landed>>,
    /// Why the change stream ended, if it did: every later lag would be wrong.
    ended: std::sync::Mutex<Option<String>>,
}

/// One ticket's versions as they landed, and its waiters' wake-up.
#[derive(Default)]
struct Landed {
    versions: Vec<(i64, Instant)>,
    changed: Arc<tokio::sync::Notify>,
}

impl Drop for ReplicaWatch {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl ReplicaWatch {
    async fn start(mongo_url: &str, orders_db: &str) -> anyhow::Result<Self> {
        let client = mongodb::Client::with_uri_str(mongo_url)
            .await
            .context("connect to the orders replica's MongoDB")?;
        // Inserts carry the version in the document, updates in the changed fields.
        let version = doc! { "$ifNull": [
            "$updateDescription.updatedFields.version",
            "$fullDocument.version",
        ] };
        let mut changes = client
            .database(orders_db)
            .collection::<Document>("tickets")
            .watch()
            .pipeline([doc! { "$project": { "documentKey": 1, "version": version } }])
            .await
            .context("watch the orders replica")?
            .with_type::<Document>();
        let seen = Arc::new(Seen::default());
        let follower = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                let why = loop {
                    let change = match changes.next().await {
                        Some(Ok(change)) => change,
                        Some(Err(error)) => break error.to_string(),
                        None => break "closed by the server".to_owned(),
                    };
                    let at = Instant::now();
                    let id = change
                        .get_document("documentKey")
                        .ok()
                        .and_then(|key| key.get_object_id("_id").ok());
                    let version = change.get_i64("version").ok();
                    if let (Some(id), Some(version)) = (id, version)
                        && let Ok(mut tickets) = seen.tickets.lock()
                    {
                        let landed = tickets.entry(id.to_hex()).or_default();
                        landed.versions.push((version, at));
                        landed.changed.notify_waiters();
                    }
                };
                if let Ok(mut ended) = seen.ended.lock() {
                    *ended = Some(why);
                }
                // Waiters give up at once rather than at their deadline.
                if let Ok(tickets) = seen.tickets.lock() {
                    for landed in tickets.values() {
                        landed.changed.notify_waiters();
                    }
                }
            }
        });
        Ok(Self {
            client,
            seen,
            follower,
        })
    }

    /// Stops following and shuts the client down.
    async fn close(mut self) {
        self.follower.abort();
        let _ = (&mut self.follower).await;
        crate::client::shut_down(&self.client).await;
    }

    /// Why the change stream ended, if it did (the lags measured after that are not real).
    fn ended(&self) -> Option<String> {
        self.seen.ended.lock().ok().and_then(|ended| ended.clone())
    }

    /// When the replica first held `version` (or a later one) of ticket `id`; `None` if not
    /// by `deadline`, or if the change stream ended.
    async fn visible(&self, id: &str, version: i64, deadline: Instant) -> Option<Instant> {
        let changed = {
            let mut tickets = self.seen.tickets.lock().ok()?;
            Arc::clone(&tickets.entry(id.to_owned()).or_default().changed)
        };
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change in between still wakes us.
            notified.as_mut().enable();
            let landed = self.seen.tickets.lock().ok().and_then(|tickets| {
                tickets
                    .get(id)?
                    .versions
                    .iter()
                    .find(|(v, _)| *v >= version)
                    .map(|(_, at)| *at)
            });
            if landed.is_some() || self.ended().is_some() {
                return landed;
            }
            tokio::time::timeout_at(deadline.into(), notified)
                .await
                .ok()?;
        }
    }
}

/// Runs the measurement against a running stack.
pub async fn run(args: &Args) -> anyhow::Result<LagReport> {
    let duration = Duration::from_secs(args.duration);
    if let (true, Some(mongo_url), Some(nats_url)) = (args.floor, &args.mongo_url, &args.nats_url) {
        return crate::bench::limits::replication_floor(
            mongo_url,
            nats_url,
            args.rate,
            duration,
            &ProgressBar::hidden(),
        )
        .await;
    }
    let mut session = Session::signup(&args.base_url, "lag").await?;
    if let Some(mongo_url) = &args.mongo_url {
        session = session.watching_replica(mongo_url, &args.orders_db).await?;
    }
    let session = Arc::new(session);
    let ids = session.seed(args.tickets).await?;
    let report = session
        .measure(&ids, args.rate, duration, &ProgressBar::hidden())
        .await;
    session.check_watch()?;
    // Every writer has finished with the session by now.
    if let Ok(session) = Arc::try_unwrap(session) {
        session.close().await;
    }
    Ok(report)
}
