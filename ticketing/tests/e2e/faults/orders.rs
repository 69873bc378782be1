//! The orders service SIGKILLed mid-load while it holds messages it has not acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use test_support::{TestContext, eventually, fake_user};
use ticketing::up::ServiceName;

use super::load::{create_tickets, start_updates, updates_reach};
use super::replication::{Applies, Replication};
use super::{CONVERGE, PrivateStack, TICKETS, UPDATES, WAIT};

/// The durable consumer of orders' ticket replica.
const CONSUMER: &str = "orders-ticket-created-and-ticket-updated";

/// Messages `CONSUMER` delivered and has not had acknowledged.
async fn ack_pending(context: &TestContext) -> u64 {
    let bus = context.bus().await;
    let stream = bus.jetstream().get_stream(bus.stream_name()).await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(CONSUMER).await.unwrap();
    consumer.info().await.unwrap().num_ack_pending as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_holding_unacked_messages_converges_and_applies_no_update_twice() {
    let stack = PrivateStack::start();
    let app = Arc::new(stack.serve(&[ServiceName::Tickets]).await);
    let log = stack.log(ServiceName::Orders);
    eprintln!(
        "faults/kill -9 orders: the orders process logs to {}",
        log.display()
    );
    let mut orders = stack.spawn(ServiceName::Orders, 0, &log);
    let replication = Replication::new(&stack).await;
    let applies = Applies::follow(&stack).await;
    let seller = fake_user();
    let ids = create_tickets(&app, &seller).await;

    let (gate, done, load) = start_updates(&app, seller, ids);
    // Mid-load on both sides: the writers well started, the consumer applying.
    gate.open(UPDATES / 4);
    updates_reach(&done, UPDATES / 4).await;
    eventually("the orders process to apply updates", WAIT, || async {
        (replication.applied().await >= 25).then_some(())
    })
    .await;
    // Frozen, the process takes deliveries and acknowledges none: the kill then surely lands
    // on messages in hand, some perhaps applied and not acknowledged.
    orders.freeze().unwrap();
    gate.open(UPDATES / 4);
    eventually("messages in the frozen process's hands", WAIT, || async {
        (ack_pending(&stack.context).await >= 10).then_some(())
    })
    .await;
    orders.kill();
    let in_hand = ack_pending(&stack.context).await;
    let killed_at = (done.load(Ordering::Relaxed), replication.applied().await);
    // More writes come while orders is down.
    gate.open(UPDATES / 4);
    let restarted_at = updates_reach(&done, UPDATES * 3 / 4).await;
    let restarted = Instant::now();
    let mut orders = stack.spawn(ServiceName::Orders, 0, &log);
    gate.open(UPDATES - UPDATES * 3 / 4);
    load.await.unwrap();
    let writes_done = restarted.elapsed();
    replication
        .converge("the orders replica to converge after the kill")
        .await;
    let converged = restarted.elapsed();
    // What the killed process held comes back only after the ack wait, perhaps after the
    // replica converged: it must change nothing either.
    eventually("every message to be acknowledged", CONVERGE, || async {
        (ack_pending(&stack.context).await == 0).then_some(())
    })
    .await;
    let tally = replication.tally(&stack.context).await;
    let writes = applies.finish();
    tokio::task::block_in_place(|| orders.stop()).unwrap();

    eprintln!(
        "faults/kill -9 orders: {UPDATES} updates of {TICKETS} tickets; orders SIGKILLed after \
         {} updates ({} applied) holding {in_hand} unacknowledged messages, restarted after \
         {restarted_at}; {tally}; {writes} writes to the replica, none of a version again; \
         converged {:.1} s after the restart, {:.1} s after the last write",
        killed_at.0,
        killed_at.1,
        converged.as_secs_f64(),
        (converged - writes_done).as_secs_f64(),
    );
    assert!(in_hand > 0, "the kill landed with nothing unacknowledged");
    tally.assert_exact();
    let _ = std::fs::remove_file(&log);
}
