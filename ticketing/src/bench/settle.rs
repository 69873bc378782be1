//! Waiting for the event backlog to drain between scenarios, so that one scenario's events
//! (reservations, replica updates, expiration schedules) are not processed during the next
//! one's window and counted against it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use futures::TryStreamExt as _;

/// The longest a drain is waited for; a backlog still there after it is reported.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The stack's event stream and its durable consumers.
pub(crate) struct Backlog {
    stream: jetstream::stream::Stream,
}

impl Backlog {
    /// The `<namespace>_events` stream on `url`.
    pub(crate) async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("connect to nats at {url}"))?;
        let name = format!("{namespace}_events");
        let stream = jetstream::new(client)
            .get_stream(&name)
            .await
            .with_context(|| format!("the stack's event stream {name} (EVENT_NAMESPACE?)"))?;
        Ok(Self { stream })
    }

    /// Messages not yet delivered or not yet acknowledged, over every consumer.
    async fn pending(&self) -> anyhow::Result<u64> {
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

    /// Waits until every consumer has handled everything (seen twice in a row, since the
    /// outbox relays publish a little after the commit); returns how long that took and what
    /// was still pending if it timed out.
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
