//! `ticketing concurrency-test`: the original app's concurrency check, against running
//! services. Each iteration creates a ticket at price 5 and updates it to 10 then 15; all
//! iterations run in parallel. Then every ticket must read price 15, version 2 in the tickets
//! service *and* in the orders service's replica.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Arguments of `ticketing concurrency-test`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the ingress's routes are served.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub base_url: String,
    /// How many tickets to create and update.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// How many iterations run at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long replicas may take to converge after the last write, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// HTTP requests sent in the write phase.
    pub requests: usize,
    /// Requests that did not answer 2xx.
    pub failed_requests: usize,
    /// Duration of the write phase.
    pub write_elapsed: Duration,
    /// From the last write until every replica converged (or the timeout).
    pub converge_elapsed: Duration,
    /// Tickets created.
    pub tickets: usize,
    /// Tickets (or replicas) that ended at another price or version: `id: what was seen`.
    pub stale: Vec<String>,
    /// Tickets absent from the orders replica.
    pub missing: Vec<String>,
}

impl Report {
    /// True when every request succeeded and nothing is stale or missing.
    pub fn passed(&self) -> bool {
        self.failed_requests == 0
            && self.stale.is_empty()
            && self.missing.is_empty()
            && self.tickets > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.write_elapsed.as_secs_f64().max(f64::EPSILON);
        writeln!(f, "tickets:        {}", self.tickets)?;
        writeln!(
            f,
            "requests:       {} ({} failed)",
            self.requests, self.failed_requests
        )?;
        writeln!(
            f,
            "write phase:    {:.2} s ({:.0} req/s)",
            secs,
            self.requests as f64 / secs
        )?;
        writeln!(
            f,
            "converged in:   {:.0} ms after the last write",
            self.converge_elapsed.as_secs_f64() * 1000.0
        )?;
        writeln!(f, "stale:          {}", self.stale.len())?;
        writeln!(f, "missing:        {}", self.missing.len())?;
        for line in self.stale.iter().chain(&self.missing).take(10) {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "result:         {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{status}: {body}");
        }
        Ok(body)
    }

    async fn iteration(&self) -> anyhow::Result<String> {
        let created = self
            .send(
                self.http
                    .post(format!("{}/api/tickets", self.base))
                    .json(&json!({"title": "concert", "price": 5})),
            )
            .await?;
        let id = created["id"]
            .as_str()
            .context("ticket without id")?
            .to_owned();
        for price in [10, 15] {
            self.send(
                self.http
                    .put(format!("{}/api/tickets/{id}", self.base))
                    .json(&json!({"title": "concert", "price": price})),
            )
            .await?;
        }
        Ok(id)
    }

    /// `None` when absent; otherwise (price, version).
    async fn read(&self, path: &str) -> anyhow::Result<Option<(f64, i64)>> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = response.error_for_status()?.json().await?;
        Ok(Some((
            body["price"].as_f64().unwrap_or_default(),
            body["version"].as_i64().unwrap_or_default(),
        )))
    }
}

fn bar(len: usize, message: &'static str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64).with_message(message);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs the test; `progress` shows progress bars on the terminal.
pub async fn run(args: &Args, progress: bool) -> anyhow::Result<Report> {
    common::install_tls_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = args.base_url.trim_end_matches('/').to_owned();
    let cookie = perf::client::signup(&http, &base, "concurrency").await?;
    let client = Client { http, base, cookie };

    let mut report = Report {
        requests: args.iterations * 3,
        ..Report::default()
    };
    let writes = bar(args.iterations, "writing", progress);
    let started = Instant::now();
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(0..args.iterations)
        .map(|_| async {
            let result = client.iteration().await;
            writes.inc(1);
            result
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    report.write_elapsed = started.elapsed();
    writes.finish();
    let mut ids = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(id) => ids.push(id),
            Err(error) => {
                report.failed_requests += 1;
                report.stale.push(format!("iteration failed: {error:#}"));
            }
        }
    }
    report.tickets = ids.len();

    // The tickets service answers synchronously: its state must already be final.
    for id in &ids {
        match client.read(&format!("/api/tickets/{id}")).await? {
            Some((price, version)) if price == 15.0 && version == 2 => {}
            Some((price, version)) => report
                .stale
                .push(format!("{id}: tickets has price {price} v{version}")),
            None => report.missing.push(format!("{id}: missing in tickets")),
        }
    }

    // The replica converges asynchronously: poll until all match or the timeout.
    let checks = bar(ids.len(), "replicated", progress);
    let converge = Instant::now();
    let deadline = converge + Duration::from_secs(args.timeout);
    let mut pending = ids;
    let mut last_seen = std::collections::HashMap::new();
    loop {
        let reads = futures::stream::iter(pending.iter().cloned())
            .map(|id| async {
                let seen = client.read(&format!("/api/orders/tickets/{id}")).await;
                (id, seen)
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        pending.clear();
        for (id, seen) in reads {
            match seen? {
                Some((price, version)) if price == 15.0 && version == 2 => checks.inc(1),
                seen => {
                    last_seen.insert(id.clone(), seen);
                    pending.push(id);
                }
            }
        }
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report.converge_elapsed = converge.elapsed();
    checks.finish();
    for id in pending {
        match last_seen.get(&id).copied().flatten() {
            Some((price, version)) => report
                .stale
                .push(format!("{id}: orders replica has price {price} v{version}")),
            None => report
                .missing
                .push(format!("{id}: missing in the orders replica")),
        }
    }
    Ok(report)
}
