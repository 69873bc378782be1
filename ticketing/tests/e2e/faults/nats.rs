//! nats-server SIGKILLed mid-load, with publications on their way: writes go on into the
//! outboxes, and once it is back the publishers drain them at once, not after an ack timeout
//! and a backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use test_support::eventually;
use ticketing::up::ServiceName;

use super::load::{replicated_load, updates_reach};
use super::replication::{Replication, published_updates};
use super::{CONVERGE, PrivateStack, TICKETS, UPDATES, WAIT};

/// Bound on draining the outbox once NATS is back. What was on its way when NATS died is never
/// acknowledged: the relay gives up on it at the reconnection and sends it again at once;
/// without that it would wait out the ack timeout (5 s from the freeze), then its backoff.
const DRAIN: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_mid_load_loses_nothing_and_publishers_drain_the_outbox_at_once() {
    let mut stack = PrivateStack::start();
    let app = Arc::new(
        stack
            .serve(&[ServiceName::Tickets, ServiceName::Orders])
            .await,
    );
    let replication = Replication::new(&stack).await;
    let (gate, done, load) = replicated_load(&app, &replication).await;
    let outbox = common::events::Outbox::new(&stack.database("tickets").await, &["tickets"]);
    gate.open(UPDATES / 5);
    updates_reach(&done, UPDATES / 5).await;
    // Frozen first, so that the kill surely catches publications on their way, never to be
    // acknowledged, while writes go on.
    stack.nats.server.freeze().unwrap();
    gate.open(UPDATES / 5);
    updates_reach(&done, UPDATES * 2 / 5).await;
    stack.nats.server.kill();
    let killed = Instant::now();
    let killed_at = done.load(Ordering::Relaxed);
    // Writes go on without NATS: they commit with their events in the outbox, which backs up
    // while the services see NATS gone (not ready).
    let outage_writes = UPDATES / 5;
    gate.open(outage_writes);
    updates_reach(&done, UPDATES * 3 / 5).await;
    let backlog = eventually("the outbox to back up during the outage", WAIT, || async {
        let pending = outbox.pending().await.unwrap();
        let ready = app.get("/readyz", None).await.status;
        (pending >= outage_writes as u64 && ready == StatusCode::SERVICE_UNAVAILABLE)
            .then_some(pending)
    })
    .await;
    // Writes race the restart too; the rest come once the backlog is gone.
    gate.open(UPDATES / 5);
    let restarted_at = done.load(Ordering::Relaxed);
    tokio::task::block_in_place(|| stack.nats.restart()).unwrap();
    let outage = killed.elapsed();
    let restarted = Instant::now();
    updates_reach(&done, UPDATES * 4 / 5).await;
    eventually("the publishers to drain the outbox", CONVERGE, || async {
        (outbox.pending().await.unwrap() == 0).then_some(())
    })
    .await;
    let drained = restarted.elapsed();
    gate.open(UPDATES - UPDATES * 4 / 5);
    load.await.unwrap();
    replication
        .converge("the orders replica to catch up after the restart")
        .await;
    let caught_up = restarted.elapsed();
    let tally = replication.tally(&stack.context).await;
    let unpublished = UPDATES - published_updates(&stack.context).await;

    eprintln!(
        "faults/kill -9 nats: {UPDATES} updates of {TICKETS} tickets; nats down {:.1} s, from \
         update {killed_at} to {restarted_at} ({} written during the outage, outbox backlog \
         {backlog}); {tally}, updates never published {unpublished}; after the restart the \
         outbox was drained in {:.2} s and the replica caught up in {:.1} s",
        outage.as_secs_f64(),
        restarted_at - killed_at,
        drained.as_secs_f64(),
        caught_up.as_secs_f64(),
    );
    tally.assert_exact();
    assert_eq!(unpublished, 0, "ticket updates never published");
    assert!(
        drained < DRAIN,
        "the outbox took {drained:?} to drain after NATS was back"
    );
}
