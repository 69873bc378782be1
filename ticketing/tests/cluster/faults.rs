//! Each fault under the steady load, every victim killed with SIGKILL: the MongoDB primary and
//! the NATS server leading the event stream stay down (a lost machine) until the rest has
//! recovered without them, then come back and rejoin; a tickets and an orders process are
//! started again at once by the supervisor (a pod restart). Then every write answered 2xx
//! must be in its source and replicated, no ticket held twice, and the outage is reported:
//! which requests failed and when, how long until everything converged.

use std::time::{Duration, Instant};

use crate::load::{Fixture, Load, Outage, Stores};
use crate::stack::{Cluster, cluster};

/// Successful writes before the fault, and after it before the load stops.
const BEFORE: usize = 200;
const AFTER: usize = 200;
/// Bound on the writes coming back after a fault: an election and a server selection
/// timeout, with room for a busy machine.
const WRITES_BACK: Duration = Duration::from_secs(60);
/// Bound on everything settling after the fault.
const CONVERGE: Duration = Duration::from_secs(60);
/// The durable consumer of orders' ticket replica, whose messages in hand a kill may catch.
const CONSUMER: &str = "orders-ticket-created-and-ticket-updated";

/// What a fault cost.
struct Figures {
    outage: Outage,
    /// From the fault until every change made until the load stopped was applied everywhere.
    converged: Duration,
    /// From the fault until every victim was back.
    back: Duration,
}

/// Runs the load and, once `BEFORE` writes succeeded, kills `victims`: `held` ones stay down
/// until the load stopped (`AFTER` more writes succeeded without them) and the stores settled.
/// Checks that nothing the load was told is lost, and that nothing failed but with 503 or 502.
async fn under_load(cluster: &Cluster, name: &str, victims: &[&str], held: bool) -> Figures {
    let mongo = cluster.mongo().await;
    let bus = cluster.bus(|config| config).await;
    let fixture = Fixture::create(&cluster.url).await;
    let started = Instant::now();
    let load = Load::start(&cluster.url, &fixture);
    load.acked_since(started, BEFORE, WRITES_BACK).await;

    let at = Instant::now();
    let restarts: Vec<u32> = victims.iter().map(|v| cluster.kill(v, held)).collect();
    let in_hand = ack_pending(&bus).await;
    load.acked_since(at, AFTER, WRITES_BACK).await;
    let log = load.stop().await;
    settle(&bus, &mongo, &format!("{name}: before the rejoin")).await;
    let converged = at.elapsed();
    let mut back = Duration::ZERO;
    for (victim, restarts) in victims.iter().zip(restarts) {
        cluster.release(victim);
        back = back.max(cluster.back(victim, restarts, at).await);
    }
    let stores = settle(&bus, &mongo, &format!("{name}: after the rejoin")).await;
    let lost = stores.lost(&log);
    let figures = Figures {
        outage: Outage::of(&log, at),
        converged,
        back,
    };
    eprintln!(
        "cluster/{name}: {}; {in_hand} messages of {CONSUMER} unacknowledged at the kill; \
         converged {:.1} s after it, back after {:.1} s; {} tickets updated and {} orders \
         made, {} lost",
        figures.outage,
        figures.converged.as_secs_f64(),
        figures.back.as_secs_f64(),
        log.acked.len(),
        log.orders.len(),
        lost.len(),
    );
    assert!(lost.is_empty(), "{name}: acknowledged but lost: {lost:#?}");
    figures.outage.assert_only_unavailable();
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mongodb_primary_killed_under_load_costs_seconds_of_503s_and_no_acknowledged_write() {
    let (_turn, cluster) = cluster().await;
    let primary = cluster.primary(&cluster.mongo().await).await;
    let figures = under_load(cluster, "kill -9 the mongodb primary", &[&primary], true).await;
    let (first, last) = figures
        .outage
        .window
        .expect("no request failed during the election");
    assert!(
        first < 1.0 && last < 30.0,
        "requests failed from {first:.1} s to {last:.1} s after the kill"
    );
    // One server selection, not a hang.
    assert!(figures.outage.slowest < Duration::from_secs(12));
    assert!(figures.converged < Duration::from_secs(45));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_server_leading_the_event_stream_killed_under_load_costs_no_request() {
    let (_turn, cluster) = cluster().await;
    let bus = cluster.bus(|config| config).await;
    let leader = cluster.stream_leader(&bus).await;
    // Leading orders' replica consumer too, its death also takes the listeners' pull requests
    // with it: they must ask the next leader, not wait for their requests to expire.
    cluster.lead_consumer(&bus, CONSUMER, &leader).await;
    let figures = under_load(
        cluster,
        "kill -9 the event stream's leader",
        &[&leader],
        true,
    )
    .await;
    // Writes go to MongoDB; only the events wait for a new leader.
    assert_eq!(figures.outage.failed, 0, "{}", figures.outage);
    assert!(figures.converged < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tickets_and_an_orders_process_killed_under_load_cost_only_their_requests_in_flight() {
    let (_turn, cluster) = cluster().await;
    let victims = ["tickets-1", "orders-1"];
    let figures = under_load(cluster, "kill -9 tickets-1 and orders-1", &victims, false).await;
    // Only what was in flight in the killed processes failed; the others took the rest.
    assert!(figures.outage.failed <= 20, "{}", figures.outage);
    assert!(
        figures.back < Duration::from_secs(5),
        "back after {:?}",
        figures.back
    );
    assert!(figures.converged < Duration::from_secs(30));
}

/// Messages `CONSUMER` delivered and has not had acknowledged, as far as JetStream says
/// (`?` while it cannot, its leader being the one killed).
/// Waits until every consumer of the stream has nothing left to deliver or acknowledged and
/// the stores agree (a store that looks settled while a message waits for redelivery is
/// not); returns the stores, or fails naming what still disagrees after [`CONVERGE`].
async fn settle(bus: &common::events::EventBus, mongo: &mongodb::Client, what: &str) -> Stores {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let undrained = undrained(bus).await;
        let stores = Stores::read(mongo).await;
        let unsettled = stores.unsettled();
        if undrained.as_ref().is_some_and(Vec::is_empty) && unsettled.is_empty() {
            return stores;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not settled within {CONVERGE:?}: consumers {undrained:?}, stores \
             {unsettled:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The consumers of the stream with a message pending or unacknowledged (`None` when that
/// cannot be read, as while the stream elects a leader).
async fn undrained(bus: &common::events::EventBus) -> Option<Vec<String>> {
    use futures::TryStreamExt as _;
    let read = async {
        let stream = bus.jetstream().get_stream(bus.stream_name()).await.ok()?;
        let consumers: Vec<_> = stream.consumers().try_collect().await.ok()?;
        Some(
            consumers
                .iter()
                .filter(|info| info.num_pending > 0 || info.num_ack_pending > 0)
                .map(|info| {
                    format!(
                        "{}: {} pending, {} unacknowledged",
                        info.name, info.num_pending, info.num_ack_pending
                    )
                })
                .collect(),
        )
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()
        .flatten()
}

async fn ack_pending(bus: &common::events::EventBus) -> String {
    let read = async {
        let stream = bus.jetstream().get_stream(bus.stream_name()).await.ok()?;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(CONSUMER).await.ok()?;
        Some(consumer.info().await.ok()?.num_ack_pending)
    };
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Some(pending)) => pending.to_string(),
        _ => "?".to_owned(),
    }
}
