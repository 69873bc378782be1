//! A signed-up writer of tickets that measures each update's lag until the orders replica
//! shows it, by polling the orders API or on the replica's change stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::ProgressBar;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::report::LagReport;
use super::schedule::OpenLoop;
use super::watch::ReplicaWatch;

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

    /// Updates the tickets `ids` in turn on `schedule` — open loop: a write is sent on time
    /// whether or not earlier ones became visible — and measures each write's lag. `sent`
    /// advances by one per write.
    pub(crate) async fn measure(
        self: &Arc<Self>,
        ids: &[String],
        schedule: OpenLoop,
        sent: &ProgressBar,
    ) -> LagReport {
        let (total, mut ticker) = schedule.start();
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
