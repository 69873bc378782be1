//! `ticketing catchup` on a small backlog: every ticket's last version lands in the orders
//! replica, with creations and updates read in order on one consumer (no redelivery). The
//! backlog is larger than the listener's backlog threshold, so its lanes wait for their
//! batches to fill on the way.

use test_support::servers;

#[tokio::test]
async fn the_orders_replica_catches_up_on_a_backlog_without_redeliveries() {
    let servers = servers();
    let report = perf::catchup::run(&perf::catchup::Args {
        mongo_url: servers.mongo_url.clone(),
        nats_url: servers.nats_url.clone(),
        events: 3_000,
        tickets: 300,
        timeout: 60,
    })
    .await
    .unwrap();
    eprintln!("{report}");
    // What the consumer delivered and the replica holds, not the input echoed back.
    assert_eq!(report.delivered, 3_000, "{report}");
    assert_eq!(report.caught_up, 300, "{report}");
    assert_eq!(report.redelivered, 0, "{report}");
    assert_eq!(report.dead_letters, 0, "{report}");
}
