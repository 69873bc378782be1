//! Waiting for the event backlog to drain between scenarios, so that one scenario's events
//! (reservations, replica updates, expiration schedules) are not processed during the next
//! one's window and counted against it.
//!
//! Drained means nothing left anywhere an event waits: not yet delivered or not yet acked by a
//! consumer (a retry waiting out its backoff stays unacked), and, where the stack serves its
//! `/metrics` on the same address (`ticketing up`), nothing committed and not yet published in
//! an outbox. A consumer acks before the events its handler wrote are published, so the
//! consumers alone look idle while those events wait in the relay.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use futures::TryStreamExt as _;

/// The longest a drain is waited for; a backlog still there after it is reported.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The gauge of the events an outbox holds, one series per service.
const OUTBOX_PENDING: &str = "events_outbox_pending{";

/// The stack's event stream and its durable consumers, and its outboxes when they can be read.
pub(crate) struct Backlog {
    stream: jetstream::stream::Stream,
    outboxes: Option<Outboxes>,
}

/// The stack's `/metrics`, which reads every outbox's pending events at each scrape.
struct Outboxes {
    http: reqwest::Client,
    url: String,
}

impl Outboxes {
    /// `/metrics` at `stack_url`, if it is there and reports the outboxes (one server, as
    /// `ticketing up`; behind the ingress each service keeps its own `/metrics` to itself).
    async fn find(stack_url: &str) -> Option<Self> {
        let http = reqwest::Client::builder().timeout(POLL * 20).build().ok()?;
        let url = format!("{}/metrics", stack_url.trim_end_matches('/'));
        let outboxes = Self { http, url };
        outboxes.pending().await.ok().map(|_| outboxes)
    }

    /// The events committed and not yet published, over every service's outbox.
    async fn pending(&self) -> anyhow::Result<u64> {
        let text = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {}", self.url))?
            .text()
            .await
            .with_context(|| format!("read {}", self.url))?;
        let mut series = 0;
        let mut total = 0;
        for line in text.lines().filter(|line| line.starts_with(OUTBOX_PENDING)) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            total += value
                .parse::<u64>()
                .with_context(|| format!("{}: not a count: {line}", self.url))?;
            series += 1;
        }
        anyhow::ensure!(series > 0, "{} reports no outbox", self.url);
        Ok(total)
    }
}

impl Backlog {
    /// The `<namespace>_events` stream on `url`, and the outboxes of the stack at `stack_url`
    /// if it reports them.
    pub(crate) async fn connect(
        url: &str,
        namespace: &str,
        stack_url: &str,
    ) -> anyhow::Result<Self> {
        let client = async_nats::connect(common::events::bus::servers(url))
            .await
            .with_context(|| format!("connect to nats at {url}"))?;
        let name = format!("{namespace}_events");
        let stream = jetstream::new(client)
            .get_stream(&name)
            .await
            .with_context(|| format!("the stack's event stream {name} (EVENT_NAMESPACE?)"))?;
        let outboxes = Outboxes::find(stack_url).await;
        Ok(Self { stream, outboxes })
    }

    /// Whether the drain also waits for the outboxes.
    pub(crate) fn sees_outboxes(&self) -> bool {
        self.outboxes.is_some()
    }

    /// Events waiting anywhere: in an outbox, or not yet delivered or acknowledged by a
    /// consumer.
    async fn pending(&self) -> anyhow::Result<u64> {
        let outboxes = match &self.outboxes {
            Some(outboxes) => outboxes.pending().await?,
            None => 0,
        };
        Ok(outboxes + self.consumers_pending().await?)
    }

    /// Messages not yet delivered or not yet acknowledged, over every consumer.
    async fn consumers_pending(&self) -> anyhow::Result<u64> {
        let consumers: Vec<_> = self
            .stream
            .consumers()
            .try_collect()
            .await
            .context("list consumers")?;
        Ok(consumers
            .iter()
            .map(|c| c.num_pending + c.num_ack_pending as u64)
            .sum())
    }

    /// Waits until nothing is pending (seen twice in a row: the outboxes and the consumers are
    /// read one after the other, and an event can move from one to the other in between);
    /// returns how long that took and what was still pending if it timed out.
    pub(crate) async fn drain(&self) -> anyhow::Result<(Duration, u64)> {
        let started = Instant::now();
        let mut quiet = 0;
        loop {
            let pending = self.pending().await?;
            quiet = if pending == 0 { quiet + 1 } else { 0 };
            if quiet == 2 {
                return Ok((started.elapsed(), 0));
            }
            if started.elapsed() > SETTLE_TIMEOUT {
                return Ok((started.elapsed(), pending));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
