//! The tickets service — the publisher — SIGKILLed between its writes and their publication:
//! what it committed and had not published goes out from the next process that starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use test_support::{TestApp, eventually};
use ticketing::up::ServiceName;

use super::load::{replicated_load, updates_reach};
use super::replication::{Replication, published_updates};
use super::{CONVERGE, PrivateStack, TICKETS, UPDATES, WAIT};

/// Bound on a new process publishing what a killed one left: its relay scans at start.
const ADOPT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_killed_between_its_writes_and_their_publication_loses_no_event() {
    let stack = PrivateStack::start();
    let _orders = stack.serve(&[ServiceName::Orders]).await;
    let log = stack.log(ServiceName::Tickets);
    eprintln!(
        "faults/kill -9 tickets: the tickets process logs to {}",
        log.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = Arc::new(TestApp::at(
        stack.context.clone(),
        format!("http://127.0.0.1:{port}"),
    ));
    let ready = || async {
        let response = app.http().get(format!("{}/readyz", app.address)).send();
        (response.await.ok()?.status() == StatusCode::OK).then_some(())
    };
    let mut tickets = stack.spawn(ServiceName::Tickets, port, &log);
    eventually("the tickets process to be ready", WAIT, &ready).await;
    let replication = Replication::new(&stack).await;
    let outbox = common::events::Outbox::new(&stack.database("tickets").await, &["tickets"]);
    let (gate, done, load) = replicated_load(&app, &replication).await;
    gate.open(UPDATES / 4);
    updates_reach(&done, UPDATES / 4).await;
    // NATS frozen: what the relay sends is never acknowledged and what is written meanwhile
    // waits in the outbox, so the kill surely lands between writes and their publication.
    stack.nats.server.freeze().unwrap();
    gate.open(UPDATES / 4);
    let killed_at = updates_reach(&done, UPDATES / 2).await;
    tickets.kill();
    let left = outbox.pending().await.unwrap();
    stack.nats.server.thaw().unwrap();
    let restarted = Instant::now();
    let mut tickets = stack.spawn(ServiceName::Tickets, port, &log);
    eventually("the new tickets process to be ready", WAIT, &ready).await;
    eventually(
        "the new process to publish what was left",
        CONVERGE,
        || async { (outbox.pending().await.unwrap() == 0).then_some(()) },
    )
    .await;
    let adopted = restarted.elapsed();
    gate.open(UPDATES - UPDATES / 2);
    load.await.unwrap();
    replication
        .converge("the orders replica to converge after the kill")
        .await;
    let converged = restarted.elapsed();
    let tally = replication.tally(&stack.context).await;
    let unpublished = UPDATES - published_updates(&stack.context).await;
    tokio::task::block_in_place(|| tickets.stop()).unwrap();

    eprintln!(
        "faults/kill -9 tickets: {UPDATES} updates of {TICKETS} tickets; tickets SIGKILLed \
         after {killed_at} updates with {left} events written and not published; the next \
         process published them {:.2} s after it was started; {tally}, updates never published \
         {unpublished}; converged {:.1} s after the restart",
        adopted.as_secs_f64(),
        converged.as_secs_f64(),
    );
    assert!(
        left >= (UPDATES / 4) as u64,
        "only {left} events were left unpublished"
    );
    tally.assert_exact();
    assert_eq!(unpublished, 0, "ticket updates never published");
    assert!(
        adopted < ADOPT,
        "what the killed process left took {adopted:?}"
    );
    let _ = std::fs::remove_file(&log);
}
