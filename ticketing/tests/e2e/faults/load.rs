//! The load of the fault tests: a seller's tickets updated by concurrent writers, through a
//! gate that the test opens in steps so that a fault lands at a known point of the load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use test_support::{TestApp, TestUser, eventually, fake_user};
use tokio::sync::Semaphore;

use super::replication::Replication;
use super::{ROUNDS, TICKETS, WAIT, WRITERS};

/// Creates the tickets the load updates, all owned by `seller`.
pub(super) async fn create_tickets(app: &TestApp, seller: &TestUser) -> Vec<String> {
    let mut ids = Vec::with_capacity(TICKETS);
    for i in 0..TICKETS {
        let ticket = app.create_ticket(seller, &format!("ticket {i}"), 1.0).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The price of ticket `i` after update `round`: each update changes it.
pub(super) fn price(i: usize, round: i64) -> f64 {
    round as f64 * 10.0 + i as f64
}

/// How many updates the load may make so far. A test opens it in steps, so that a fault lands
/// mid-load and a known number of writes happens on each side of it however fast the stack
/// is: timed waits on a free-running load would let it finish before the fault on a fast run.
#[derive(Clone)]
pub(super) struct Gate(Arc<Semaphore>);

impl Gate {
    pub(super) fn closed() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    /// Lets `updates` more updates through.
    pub(super) fn open(&self, updates: usize) {
        self.0.add_permits(updates);
    }

    pub(super) async fn pass(&self) {
        self.0
            .acquire()
            .await
            .expect("the gate is never closed")
            .forget();
    }
}

/// Updates every ticket `ROUNDS` times through the API as far as `gate` lets it, counting
/// successful updates in `done`.
pub(super) async fn update_tickets(
    app: Arc<TestApp>,
    seller: TestUser,
    ids: Vec<String>,
    gate: Gate,
    done: Arc<AtomicUsize>,
) {
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (app, seller, gate, done) = (app.clone(), seller.clone(), gate.clone(), done.clone());
        let own: Vec<(usize, String)> = ids
            .iter()
            .cloned()
            .enumerate()
            .filter(|(i, _)| i % WRITERS == writer)
            .collect();
        writers.spawn(async move {
            for round in 1..=ROUNDS {
                for (i, id) in &own {
                    gate.pass().await;
                    let body =
                        json!({"title": format!("ticket {i} v{round}"), "price": price(*i, round)});
                    let response = app
                        .put(&format!("/api/tickets/{id}"), Some(&seller.cookie), body)
                        .await;
                    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.unwrap();
    }
}

/// Starts [`update_tickets`] in the background behind a closed gate; returns the gate, the
/// count of updates made, and the load's task.
pub(super) fn start_updates(
    app: &Arc<TestApp>,
    seller: TestUser,
    ids: Vec<String>,
) -> (Gate, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let (gate, done) = (Gate::closed(), Arc::new(AtomicUsize::new(0)));
    let load = tokio::spawn(update_tickets(
        app.clone(),
        seller,
        ids,
        gate.clone(),
        done.clone(),
    ));
    (gate, done, load)
}

/// A seller's tickets created and in the orders replica, and [`update_tickets`] on them
/// started behind a closed gate; returns the gate, the count of updates made, and the load's
/// task.
pub(super) async fn replicated_load(
    app: &Arc<TestApp>,
    replication: &Replication,
) -> (Gate, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let seller = fake_user();
    let ids = create_tickets(app, &seller).await;
    replication
        .converge("the created tickets to replicate")
        .await;
    start_updates(app, seller, ids)
}

/// Waits until the load has made at least `count` updates; returns how many it has made.
pub(super) async fn updates_reach(done: &AtomicUsize, count: usize) -> usize {
    eventually(&format!("{count} ticket updates"), WAIT, || async {
        let now = done.load(Ordering::Relaxed);
        (now >= count).then_some(now)
    })
    .await
}

/// The request's response and how long it took.
pub(super) async fn timed<T>(request: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let response = request.await;
    (response, started.elapsed())
}
