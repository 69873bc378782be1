//! The cluster without faults: the concurrency test at N=200 through the ingress, and the
//! configuration clusters need (several NATS servers in one URL, streams kept on three).

use crate::stack::cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_create_update_update_iterations_converge_on_the_cluster() {
    let (_turn, cluster) = cluster().await;
    let args = ticketing::concurrency::Args {
        base_url: cluster.url.clone(),
        iterations: 200,
        concurrency: 64,
        timeout: 60,
    };
    let report = ticketing::concurrency::run(&args, false).await.unwrap();
    eprintln!("cluster/concurrency:\n{report}");
    assert_eq!(report.tickets, 200);
    assert!(report.passed(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_url_of_several_servers_connects_past_a_dead_one_and_never_lowers_the_replicas() {
    let (_turn, cluster) = cluster().await;
    // A first server that is not there: the bus goes on to the next ones. The default of one
    // replica must not lower the streams the services created with three.
    let url = format!("nats://127.0.0.1:1,{}", cluster.nats_url);
    let bus = cluster
        .bus(|mut config| {
            config.url = url;
            config
        })
        .await;
    for name in [bus.stream_name(), bus.dead_letter_stream_name()] {
        let mut stream = bus.jetstream().get_stream(&name).await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3, "{name}");
        let replicas = info
            .cluster
            .as_ref()
            .map_or(0, |cluster| cluster.replicas.len());
        assert_eq!(replicas, 2, "{name}: followers besides the leader");
    }
}
