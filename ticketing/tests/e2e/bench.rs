//! `ticketing bench` against the in-process stack, every scenario and limit for a second with
//! two clients: each produced requests, none failed, and the JSON results read back. No
//! throughput is asserted: this checks the bench, not the machine.

use perf::bench::{self, Scenario, report::Results};

use crate::spawn_stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_bench_runs_every_scenario_and_limit_without_errors() {
    let app = spawn_stack().await;
    let out = std::env::temp_dir().join(format!("{}.json", app.context.namespace));
    let args = bench::Args {
        clients: 2,
        duration: 1.0,
        warmup: 0.2,
        lag_rate: 50,
        mongo_url: Some(app.context.mongo_url.clone()),
        nats_url: Some(app.context.nats_url.clone()),
        event_namespace: app.context.namespace.clone(),
        orders_db: format!("{}_orders", app.context.namespace),
        out: Some(out.clone()),
        ticketing_exe: Some(env!("CARGO_BIN_EXE_ticketing").into()),
        ..bench::Args::new(app.address.clone())
    };
    let (results, path) = bench::run(&args, false).await.unwrap();
    let table = bench::report::table(&results);
    println!("{table}");

    let names: Vec<&str> = results.scenarios.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, Scenario::ALL.map(Scenario::name));
    assert_eq!(results.limits.len(), 7, "{table}");
    for row in results.scenarios.iter().chain(&results.limits) {
        assert!(row.requests > 0, "{} sent no request\n{table}", row.name);
        assert_eq!(row.errors, 0, "{} had errors\n{table}", row.name);
        assert!(
            row.latency_ms.max > 0.0,
            "{}: no latency\n{table}",
            row.name
        );
    }
    // The bare handler runs in a process of its own, which reports its CPU time as the
    // stack does.
    let bare = results.row("bare-handler").unwrap();
    assert!(bare.cpu_us_per_request.is_some(), "{table}");
    for scenario in ["currentuser", "create-ticket", "list-tickets", "lag"] {
        let row = results.row(scenario).unwrap();
        assert!(row.versus.is_some(), "{scenario} has a limit\n{table}");
    }

    assert_eq!(path, out);
    let written = Results::read(&path).unwrap();
    assert_eq!(written.scenarios.len(), Scenario::ALL.len());
    assert_eq!(written.params.clients, 2);
    std::fs::remove_file(&path).unwrap();
}
