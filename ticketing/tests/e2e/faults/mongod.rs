//! mongod SIGKILLed mid-load: requests answer 503 within one server selection, `/readyz` at
//! once, every write acknowledged before the kill is still there afterwards, and the services
//! recover by themselves once it is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use test_support::{TestApp, TestUser, eventually, fake_user};
use ticketing::up::ServiceName;

use super::load::timed;
use super::replication::versions;
use super::{PrivateStack, WAIT};

/// Writers updating a ticket each, all through the kill.
const WRITERS: usize = 4;

/// Each writer's ticket and the last update of it answered 200: its version and price.
type Acked = Arc<Mutex<HashMap<String, (i64, f64)>>>;

/// Updates `id` to a new price again and again until `stop`, noting each 200 in `acked`; any
/// other answer (503 while mongod is down) is tried again with the next price.
async fn keep_updating(
    app: Arc<TestApp>,
    seller: TestUser,
    id: String,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let mut price = 1.0;
    while !stop.load(Ordering::Relaxed) {
        price += 1.0;
        let body = json!({"title": "steady", "price": price});
        let response = app
            .put(&format!("/api/tickets/{id}"), Some(&seller.cookie), body)
            .await;
        if response.status == StatusCode::OK {
            let version = response.body["version"].as_i64().unwrap();
            acked.lock().unwrap().insert(id.clone(), (version, price));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Updates acknowledged for each writer's ticket so far, by the version they reached.
fn acked_versions(acked: &Acked) -> Vec<i64> {
    acked
        .lock()
        .unwrap()
        .values()
        .map(|(version, _)| *version)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongod_killed_mid_load_answers_503_keeps_acknowledged_writes_and_recovers_by_itself() {
    let mut stack = PrivateStack::start();
    let app = Arc::new(
        stack
            .serve(&[ServiceName::Tickets, ServiceName::Orders])
            .await,
    );
    let seller = fake_user();
    let cookie = Some(seller.cookie.as_str());
    let created = app.create_ticket(&seller, "gig", 5.0).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ticket = format!("/api/tickets/{id}");
    assert_eq!(app.get("/readyz", None).await.status, StatusCode::OK);
    let (acked, stop) = (Acked::default(), Arc::new(AtomicBool::new(false)));
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let steady = app
            .create_ticket(&seller, &format!("steady {i}"), 1.0)
            .await;
        let id = steady["id"].as_str().unwrap().to_owned();
        let task = keep_updating(app.clone(), seller.clone(), id, acked.clone(), stop.clone());
        writers.spawn(task);
    }
    eventually(
        "every writer to be acknowledged a few times",
        WAIT,
        || async {
            let versions = acked_versions(&acked);
            (versions.len() == WRITERS && versions.iter().all(|v| *v >= 5)).then_some(())
        },
    )
    .await;

    // Mid-load: writers' requests are in flight when it dies.
    stack.mongo.server.kill();
    let killed = Instant::now();
    let before: Vec<i64> = acked_versions(&acked);
    let (ready, show, update, create) = tokio::join!(
        timed(app.get("/readyz", None)),
        timed(app.get(&ticket, None)),
        timed(app.put(&ticket, cookie, json!({"title": "gig", "price": 6.0}))),
        timed(app.post(
            "/api/tickets",
            cookie,
            json!({"title": "new", "price": 1.0})
        )),
    );
    assert_eq!(
        ready.0.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.0.body
    );
    assert_eq!(ready.0.body["status"], "unavailable");
    // The readiness check's own bound, not the driver's 5 s server selection.
    assert!(
        ready.1 < Duration::from_secs(3),
        "/readyz took {:?}",
        ready.1
    );
    for (what, (response, took)) in [("GET", &show), ("PUT", &update), ("POST", &create)] {
        assert_eq!(
            response.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what} {}",
            response.body
        );
        response.assert_error_shape();
        assert_eq!(
            response.error_messages(),
            ["Service temporarily unavailable"]
        );
        // One server selection (5 s), not one per transaction retry.
        assert!(*took < Duration::from_secs(8), "{what} took {took:?}");
    }

    tokio::task::block_in_place(|| stack.mongo.restart()).unwrap();
    let outage = killed.elapsed();
    let back = Instant::now();
    eventually("/readyz to answer 200 again", WAIT, || async {
        (app.get("/readyz", None).await.status == StatusCode::OK).then_some(())
    })
    .await;
    let ready_again = back.elapsed();
    let updated = eventually("an update to succeed again", WAIT, || async {
        let response = app
            .put(&ticket, cookie, json!({"title": "gig", "price": 7.0}))
            .await;
        (response.status == StatusCode::OK).then_some(response.body)
    })
    .await;
    let writable_again = back.elapsed();
    assert_eq!(updated["version"], 1);
    // The relay and the orders listener recovered too: the update reaches the replica.
    app.get_until(
        &format!("/api/orders/tickets/{id}"),
        cookie,
        "the update to reach the orders replica",
        |body| body["version"] == 1 && body["price"] == 7.0,
    )
    .await;
    let replicated_again = back.elapsed();
    assert!(stack.context.dead_letters().await.is_empty());
    eventually("the writers to be acknowledged again", WAIT, || async {
        let after = acked_versions(&acked);
        (after.iter().sum::<i64>() >= before.iter().sum::<i64>() + 5 * WRITERS as i64).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    // Every update answered 200, before the kill or after it, is in the store.
    let stored = versions(&stack.database("tickets").await.collection("tickets")).await;
    let acked = acked.lock().unwrap().clone();
    for (id, (version, price)) in &acked {
        let (stored_version, stored_price) = stored[&id.parse().unwrap()];
        assert!(
            stored_version > *version || (stored_version == *version && stored_price == *price),
            "{id}: acknowledged v{version} at {price}, stored v{stored_version} at {stored_price}"
        );
    }

    eprintln!(
        "faults/kill -9 mongod: down {:.1} s, {WRITERS} writers acknowledged up to v{before:?} \
         before it and nothing lost; meanwhile /readyz 503 in {} ms, GET/PUT/POST 503 in \
         {}/{}/{} ms; after mongod was back: ready in {} ms, writable in {} ms, replicated in {} \
         ms",
        outage.as_secs_f64(),
        ready.1.as_millis(),
        show.1.as_millis(),
        update.1.as_millis(),
        create.1.as_millis(),
        ready_again.as_millis(),
        writable_again.as_millis(),
        replicated_again.as_millis(),
    );
}
