//! `ticketing concurrency-test` at N=200 against the in-process stack: zero stale, zero missing.

use crate::spawn_stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_create_update_update_iterations_converge_everywhere() {
    let app = spawn_stack().await;
    let args = ticketing::concurrency::Args {
        base_url: app.address.clone(),
        iterations: 200,
        concurrency: 64,
        timeout: 60,
    };
    let report = ticketing::concurrency::run(&args, false).await.unwrap();
    println!("{report}");
    assert_eq!(report.tickets, 200);
    assert_eq!(report.failed_requests, 0, "{report}");
    assert!(report.stale.is_empty(), "{report}");
    assert!(report.missing.is_empty(), "{report}");
    assert!(report.passed());
}
