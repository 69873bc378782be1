//! Faults with real processes: the orders service SIGKILLed mid-load, nats-server restarted
//! mid-load, mongod stopped and started again. Each test runs its own mongod and nats-server
//! (it stops them, so it cannot share the binary's), and prints its figures for `--nocapture`.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::config::Env;
use futures::TryStreamExt as _;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use mongodb::{Collection, Database};
use reqwest::StatusCode;
use serde_json::json;
use test_support::{TestApp, TestContext, TestUser, eventually, fake_user, unique_name};
use ticketing::up::ServiceName;
use tokio::sync::Semaphore;

/// Tickets updated by every load.
const TICKETS: usize = 50;
/// Updates of each ticket: 50 × 10 = 500 updates, so every ticket ends at version 10.
const ROUNDS: i64 = 10;
const UPDATES: usize = TICKETS * ROUNDS as usize;
/// Concurrent writers; each owns its tickets, so a ticket's updates never race each other.
const WRITERS: usize = 8;
/// Bound on convergence after a fault. A SIGKILLed consumer's unacked messages come back only
/// after the listener's 10 s ack wait, so this leaves room for that.
const CONVERGE: Duration = Duration::from_secs(40);
/// Bound on anything else the tests wait for.
const WAIT: Duration = Duration::from_secs(20);

/// A test's own mongod and nats-server, which it may stop, kill or restart, and its services'
/// environment on them.
struct PrivateStack {
    mongo: devenv::Mongo,
    nats: devenv::Nats,
    context: TestContext,
}

impl PrivateStack {
    fn start() -> Self {
        let tools = devenv::default_tools().unwrap();
        let (mongo, nats) = tokio::task::block_in_place(|| {
            let mongo = devenv::start_mongo(&tools, devenv::MongoOptions::default()).unwrap();
            let nats = devenv::start_nats(&tools, devenv::NatsOptions::default()).unwrap();
            (mongo, nats)
        });
        let context = TestContext {
            namespace: unique_name("faults"),
            mongo_url: mongo.url.clone(),
            nats_url: nats.url.clone(),
        };
        Self {
            mongo,
            nats,
            context,
        }
    }

    /// A service's environment, as `ticketing up` gives it: the database is the service's
    /// name (the servers are this test's alone), events in this test's namespace.
    fn env(&self, service: &str) -> Env {
        self.context.env(service).with("MONGO_DB", service)
    }

    /// The named services in this process, on a free port.
    async fn serve(&self, names: &[ServiceName]) -> TestApp {
        let services = ticketing::up::services_named(names, |name| self.env(name))
            .await
            .unwrap();
        TestApp::serve(self.context.clone(), services).await
    }

    async fn database(&self, service: &str) -> Database {
        mongodb::Client::with_uri_str(&self.mongo.url)
            .await
            .unwrap()
            .database(service)
    }

    /// `ticketing up --services orders` as a child process with the same environment as the
    /// services in this process; its logs are appended to `log`.
    fn spawn_orders(&self, log: &PathBuf) -> devenv::Supervised {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
        command
            .args(["up", "--services", "orders", "--port", "0"])
            .env_clear()
            .env("MONGO_URL", &self.context.mongo_url)
            .env("NATS_URL", &self.context.nats_url)
            .env("EVENT_NAMESPACE", &self.context.namespace)
            .env("JWT_KEY", test_support::JWT_KEY)
            .env("COOKIE_SECURE", "false")
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        devenv::Supervised::spawn("ticketing up --services orders", command, WAIT).unwrap()
    }
}

/// Creates the tickets the load updates, all owned by `seller`.
async fn create_tickets(app: &TestApp, seller: &TestUser) -> Vec<String> {
    let mut ids = Vec::with_capacity(TICKETS);
    for i in 0..TICKETS {
        let ticket = app.create_ticket(seller, &format!("ticket {i}"), 1.0).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The price of ticket `i` after update `round`: each update changes it.
fn price(i: usize, round: i64) -> f64 {
    round as f64 * 10.0 + i as f64
}

/// How many updates the load may make so far. A test opens it in steps, so that a fault lands
/// mid-load and a known number of writes happens on each side of it however fast the stack
/// is: timed waits on a free-running load would let it finish before the fault on a fast run.
#[derive(Clone)]
struct Gate(Arc<Semaphore>);

impl Gate {
    fn closed() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    /// Lets `updates` more updates through.
    fn open(&self, updates: usize) {
        self.0.add_permits(updates);
    }

    async fn pass(&self) {
        self.0
            .acquire()
            .await
            .expect("the gate is never closed")
            .forget();
    }
}

/// Updates every ticket `ROUNDS` times through the API as far as `gate` lets it, counting
/// successful updates in `done`.
async fn update_tickets(
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

/// `(version, price)` of every record in `collection`.
async fn versions(collection: &Collection<Document>) -> HashMap<ObjectId, (i64, f64)> {
    let records: Vec<Document> = collection
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    records
        .into_iter()
        .map(|record| {
            let version = match record.get("version") {
                Some(Bson::Int64(v)) => *v,
                Some(Bson::Int32(v)) => i64::from(*v),
                other => panic!("bad version {other:?} in {record}"),
            };
            let price = record.get_f64("price").unwrap();
            (record.get_object_id("_id").unwrap(), (version, price))
        })
        .collect()
}

/// The tickets service's tickets and the orders service's replica of them.
struct Replication {
    tickets: Collection<Document>,
    replica: Collection<Document>,
}

impl Replication {
    async fn new(stack: &PrivateStack) -> Self {
        Self {
            tickets: stack.database("tickets").await.collection("tickets"),
            replica: stack.database("orders").await.collection("tickets"),
        }
    }

    /// Ticket updates the replica has applied so far (the sum of its versions).
    async fn applied(&self) -> i64 {
        versions(&self.replica).await.values().map(|(v, _)| v).sum()
    }

    /// Tickets whose replica is missing or differs from the ticket in version or price.
    async fn stale(&self) -> Vec<ObjectId> {
        let replica = versions(&self.replica).await;
        versions(&self.tickets)
            .await
            .into_iter()
            .filter(|(id, ticket)| replica.get(id) != Some(ticket))
            .map(|(id, _)| id)
            .collect()
    }

    /// Waits until no replica is stale; returns how long that took.
    async fn converge(&self, what: &str) -> Duration {
        let started = Instant::now();
        eventually(what, CONVERGE, || async {
            self.stale().await.is_empty().then_some(())
        })
        .await;
        started.elapsed()
    }

    /// How the replica compares with the tickets once the load is over.
    async fn tally(&self, context: &TestContext) -> Tally {
        let tickets = versions(&self.tickets).await;
        let replica = versions(&self.replica).await;
        let mut tally = Tally {
            tickets: tickets.len(),
            dead_letters: context.dead_letters().await.len(),
            ..Tally::default()
        };
        for (id, ticket) in &tickets {
            let copy = replica.get(id);
            tally.stale += usize::from(copy != Some(ticket));
            // A missing replica lacks the creation (version 0) as well as every update.
            tally.lost += ticket.0 - copy.map_or(-1, |(version, _)| *version).min(ticket.0);
            tally.wrong_version += usize::from(copy.is_none_or(|(version, _)| *version != ROUNDS));
        }
        tally
    }
}

/// Figures of a replica after a fault; all zero when nothing went wrong.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    tickets: usize,
    /// Replicas that differ from their ticket (version or price) or are missing.
    stale: usize,
    /// Ticket events (creations and updates) the replica lacks.
    lost: i64,
    /// Replicas whose version is not the number of updates: an update applied twice would
    /// show here, as would one skipped.
    wrong_version: usize,
    dead_letters: usize,
}

impl Tally {
    #[track_caller]
    fn assert_exact(&self) {
        let exact = Tally {
            tickets: TICKETS,
            ..Tally::default()
        };
        assert_eq!(self, &exact, "the replica did not converge exactly");
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "events lost {}, stale replicas {}/{}, versions other than {ROUNDS} (applied twice or \
             skipped) {}, dead letters {}",
            self.lost, self.stale, self.tickets, self.wrong_version, self.dead_letters
        )
    }
}

/// Starts [`update_tickets`] in the background behind a closed gate; returns the gate, the
/// count of updates made, and the load's task.
fn start_updates(
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

/// Waits until the load has made at least `count` updates; returns how many it has made.
async fn updates_reach(done: &AtomicUsize, count: usize) -> usize {
    eventually(&format!("{count} ticket updates"), WAIT, || async {
        let now = done.load(Ordering::Relaxed);
        (now >= count).then_some(now)
    })
    .await
}

/// The request's response and how long it took.
async fn timed<T>(request: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let response = request.await;
    (response, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_mid_load_converges_after_restart_with_nothing_stale_or_applied_twice() {
    let stack = PrivateStack::start();
    let app = Arc::new(stack.serve(&[ServiceName::Tickets]).await);
    let log = std::env::temp_dir().join(format!("{}-orders.log", stack.context.namespace));
    eprintln!(
        "faults/kill -9 orders: the orders process logs to {}",
        log.display()
    );
    let mut orders = stack.spawn_orders(&log);
    let replication = Replication::new(&stack).await;
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
    // Writes race the kill, and more come while orders is down.
    gate.open(UPDATES / 4);
    orders.kill();
    let killed_at = (done.load(Ordering::Relaxed), replication.applied().await);
    gate.open(UPDATES / 4);
    let restarted_at = updates_reach(&done, UPDATES * 3 / 4).await;
    let restarted = Instant::now();
    let mut orders = stack.spawn_orders(&log);
    gate.open(UPDATES - UPDATES * 3 / 4);
    load.await.unwrap();
    let writes_done = restarted.elapsed();
    replication
        .converge("the orders replica to converge after the kill")
        .await;
    let converged = restarted.elapsed();
    let tally = replication.tally(&stack.context).await;
    tokio::task::block_in_place(|| orders.stop()).unwrap();

    eprintln!(
        "faults/kill -9 orders: {UPDATES} updates of {TICKETS} tickets; orders SIGKILLed after \
         {} updates ({} applied), restarted after {restarted_at}; {tally}; converged {:.1} s \
         after the restart, {:.1} s after the last write",
        killed_at.0,
        killed_at.1,
        converged.as_secs_f64(),
        (converged - writes_done).as_secs_f64(),
    );
    tally.assert_exact();
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_load_loses_nothing_and_publishers_catch_up_from_the_outbox() {
    let mut stack = PrivateStack::start();
    let app = Arc::new(
        stack
            .serve(&[ServiceName::Tickets, ServiceName::Orders])
            .await,
    );
    let replication = Replication::new(&stack).await;
    let seller = fake_user();
    let ids = create_tickets(&app, &seller).await;
    replication
        .converge("the created tickets to replicate")
        .await;

    let (gate, done, load) = start_updates(&app, seller, ids);
    let outbox = common::events::Outbox::new(&stack.database("tickets").await, &["tickets"]);
    gate.open(UPDATES / 5);
    updates_reach(&done, UPDATES / 5).await;
    // Writes race the halt.
    gate.open(UPDATES / 5);
    tokio::task::block_in_place(|| stack.nats.server.halt()).unwrap();
    let halted = Instant::now();
    let halted_at = done.load(Ordering::Relaxed);
    // Writes go on without NATS: they commit with their events in the outbox, which backs up
    // while the services see NATS gone (not ready). These ones surely find it down.
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
    // Writes race the restart too, and the rest come after it.
    gate.open(UPDATES / 5);
    let restarted_at = done.load(Ordering::Relaxed);
    tokio::task::block_in_place(|| stack.nats.restart()).unwrap();
    let outage = halted.elapsed();
    let restarted = Instant::now();
    gate.open(UPDATES - UPDATES * 4 / 5);
    load.await.unwrap();
    eventually("the publishers to drain the outbox", CONVERGE, || async {
        (outbox.pending().await.unwrap() == 0).then_some(())
    })
    .await;
    let drained = restarted.elapsed();
    replication
        .converge("the orders replica to catch up after the restart")
        .await;
    let caught_up = restarted.elapsed();
    let tally = replication.tally(&stack.context).await;
    let published: std::collections::HashSet<(String, i64)> = stack
        .context
        .events()
        .await
        .into_iter()
        .filter(|(subject, _)| subject == "ticket:updated")
        .map(|(_, event)| {
            let id = event["id"].as_str().unwrap().to_owned();
            (id, event["version"].as_i64().unwrap())
        })
        .collect();
    let unpublished = UPDATES - published.len();

    eprintln!(
        "faults/nats restart: {UPDATES} updates of {TICKETS} tickets; nats down {:.1} s, from \
         update {halted_at} to {restarted_at} ({} written during the outage, outbox backlog \
         {backlog}); {tally}, updates never published {unpublished}; after the restart the \
         outbox was drained in {:.1} s and the replica caught up in {:.1} s",
        outage.as_secs_f64(),
        restarted_at - halted_at,
        drained.as_secs_f64(),
        caught_up.as_secs_f64(),
    );
    tally.assert_exact();
    assert_eq!(unpublished, 0, "ticket updates never published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongod_stopped_answers_503_not_ready_and_recovers_by_itself_once_back() {
    let mut stack = PrivateStack::start();
    let app = stack
        .serve(&[ServiceName::Tickets, ServiceName::Orders])
        .await;
    let seller = fake_user();
    let cookie = Some(seller.cookie.as_str());
    let created = app.create_ticket(&seller, "gig", 5.0).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ticket = format!("/api/tickets/{id}");
    assert_eq!(app.get("/readyz", None).await.status, StatusCode::OK);

    tokio::task::block_in_place(|| stack.mongo.server.halt()).unwrap();
    let halted = Instant::now();
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
    let outage = halted.elapsed();
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

    eprintln!(
        "faults/mongod stop: down {:.1} s; meanwhile /readyz 503 in {} ms, GET/PUT/POST 503 in \
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
