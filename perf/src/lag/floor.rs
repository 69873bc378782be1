//! The replication floor: the least a replicated write's lag can be on these servers, measured
//! through the bare MongoDB and NATS at the lag's rate (`ticketing lag --floor`, and the
//! bench's `replication-floor` limit).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use indicatif::ProgressBar;
use mongodb::bson::{Document, doc};

use super::report::LagReport;
use super::schedule::OpenLoop;
use crate::throwaway::{self, DatabaseAndStream, StackNats};

/// At most this many events are written to the floor's replica at once, as the listener's
/// lanes do.
const FLOOR_LANES: usize = 32;

/// `replication-floor`, open loop on `schedule`, in a throwaway database and stream: each
/// write is a ticket-sized `insert_one` and, once it is stored, the publish of its event (ack
/// awaited); a pull consumer stores each event in a replica collection and acks it; the lag
/// runs from the first insert's return until the replica's change stream shows the second.
/// The same durable writes, publish, consume and change stream as the lag scenario, without
/// HTTP, sessions, the outbox's removal or the version check: what the servers alone cost at
/// that rate on this machine.
pub(crate) async fn replication_floor(
    mongo_url: &str,
    nats: &StackNats,
    schedule: OpenLoop,
    sent: &ProgressBar,
) -> anyhow::Result<LagReport> {
    let throwaway = DatabaseAndStream::create(mongo_url, nats, "floor").await?;
    let result = floor(&throwaway, schedule, sent).await;
    throwaway.remove().await?;
    result
}

async fn floor(
    throwaway: &DatabaseAndStream,
    schedule: OpenLoop,
    sent: &ProgressBar,
) -> anyhow::Result<LagReport> {
    use futures::StreamExt as _;
    use jetstream::consumer::{AckPolicy, pull};

    let DatabaseAndStream {
        database,
        jetstream: context,
        stream,
    } = throwaway;
    let source = database.collection::<Document>("source");
    let replica = database.collection::<Document>("replica");
    let mut changes = replica.watch().await.context("watch the floor's replica")?;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(change)) = changes.next().await {
            let at = Instant::now();
            let key = change
                .document_key
                .as_ref()
                .and_then(|k| k.get_i64("_id").ok());
            if let Some(n) = key
                && seen_tx.send((n, at)).is_err()
            {
                break;
            }
        }
    });

    let consumer = context
        .get_stream(stream)
        .await
        .with_context(|| format!("get stream {stream}"))?
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("create the floor's consumer")?;
    let mut messages = consumer
        .messages()
        .await
        .context("pull the floor's events")?;
    let applier = tokio::spawn({
        let replica = replica.clone();
        async move {
            // Aborting the applier drops this set, which aborts the applies in it.
            let mut lanes = tokio::task::JoinSet::new();
            while let Some(Ok(message)) = messages.next().await {
                while lanes.try_join_next().is_some() {}
                if lanes.len() >= FLOOR_LANES {
                    lanes.join_next().await;
                }
                let replica = replica.clone();
                lanes.spawn(async move {
                    let n = std::str::from_utf8(&message.payload)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok());
                    if let Some(n) = n
                        && replica.insert_one(doc! { "_id": n }).await.is_ok()
                    {
                        let _ = message.ack().await;
                    }
                });
            }
        }
    });

    let (total, mut ticker) = schedule.start();
    let subject = format!("{stream}.events.ticket.updated");
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        sent.inc(1);
        let (source, context, subject) = (source.clone(), context.clone(), subject.clone());
        writes.spawn(async move {
            source
                .insert_one(throwaway::ticket_document(n as u64))
                .await
                .ok()?;
            let written = Instant::now();
            let ack = context.publish(subject, n.to_string().into()).await.ok()?;
            ack.await.ok()?;
            Some((n as i64, written))
        });
    }
    let mut written = std::collections::HashMap::with_capacity(total);
    while let Some(joined) = writes.join_next().await {
        if let Ok(Some((n, at))) = joined {
            written.insert(n, at);
        }
    }
    let mut report = LagReport {
        writes: total,
        failed_writes: total - written.len(),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while report.lags.len() < written.len() {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some((n, at))) => {
                if let Some(start) = written.get(&n) {
                    report.lags.push(at.saturating_duration_since(*start));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    applier.abort();
    watcher.abort();
    let _ = applier.await;
    let _ = watcher.await;
    report.failures = total - report.lags.len();
    report.lags.sort_unstable();
    Ok(report)
}
