//! A steady write load through the ingress — sellers updating their tickets, two buyers racing
//! for the same tickets and cancelling what they got — and what a fault must not have cost
//! it: every write answered 2xx is in its source and replicated, no ticket is held by two
//! orders, no answer was a 500 or never came.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{TestUser, eventually, fake_user};
use tokio::task::JoinSet;

/// Tickets the sellers update; each writer owns its share.
const UPDATED: usize = 40;
const WRITERS: usize = 4;
/// Tickets the buyers race for.
const FOR_SALE: usize = 12;
const BUYERS: usize = 2;
/// A pause between one client's requests, so that the load is steady rather than all this
/// machine can do: the faults, not the load, must show in the figures.
const PACE: Duration = Duration::from_millis(10);
/// No request may take longer: a hang is a failure, not a slow answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What was sent, when, and what came back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    /// When it was sent.
    pub(crate) sent: Instant,
    /// How long its answer took.
    pub(crate) took: Duration,
    /// Its status; `None` when no answer came (a transport error or the timeout).
    pub(crate) status: Option<StatusCode>,
}

/// Everything the load saw.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) records: Vec<Record>,
    /// The last update of each ticket answered 200: its version and price.
    pub(crate) acked: HashMap<String, (i64, f64)>,
    /// Orders answered 201, with their ticket.
    pub(crate) orders: Vec<(String, String)>,
    /// Orders whose cancellation was answered 204.
    pub(crate) cancelled: HashSet<String>,
}

impl Log {
    /// Successful writes sent at or after `since`.
    pub(crate) fn acked_since(&self, since: Instant) -> usize {
        self.records
            .iter()
            .filter(|r| r.sent >= since && r.status.is_some_and(|s| s.is_success()))
            .count()
    }
}

/// The tickets the load works on and its users.
pub(crate) struct Fixture {
    seller: TestUser,
    updated: Vec<String>,
    for_sale: Vec<String>,
}

impl Fixture {
    /// Creates the tickets through the ingress and waits until orders has every one.
    pub(crate) async fn create(url: &str) -> Self {
        let http = http();
        let seller = fake_user();
        let mut ids = Vec::new();
        for i in 0..UPDATED + FOR_SALE {
            let body = json!({"title": format!("ticket {i}"), "price": 1.0});
            let response = http
                .post(format!("{url}/api/tickets"))
                .header("cookie", &seller.cookie)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            let ticket: Value = response.json().await.unwrap();
            ids.push(ticket["id"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            eventually(
                "orders to have the ticket",
                Duration::from_secs(30),
                || async {
                    let response = http
                        .get(format!("{url}/api/orders/tickets/{id}"))
                        .send()
                        .await
                        .ok()?;
                    (response.status() == StatusCode::OK).then_some(())
                },
            )
            .await;
        }
        let for_sale = ids.split_off(UPDATED);
        Self {
            seller,
            updated: ids,
            for_sale,
        }
    }
}

fn http() -> reqwest::Client {
    test_support::client_builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// The load running in the background.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    tasks: JoinSet<()>,
}

impl Load {
    /// Starts the writers and buyers against the ingress at `url`.
    pub(crate) fn start(url: &str, fixture: &Fixture) -> Self {
        let (stop, log) = (Arc::default(), Arc::default());
        let mut load = Self {
            stop,
            log,
            tasks: JoinSet::new(),
        };
        for writer in 0..WRITERS {
            let own: Vec<String> = fixture
                .updated
                .iter()
                .skip(writer)
                .step_by(WRITERS)
                .cloned()
                .collect();
            let client = load.client(url, &fixture.seller);
            load.tasks.spawn(client.update(own));
        }
        for buyer in 0..BUYERS {
            let client = load.client(url, &fake_user());
            load.tasks
                .spawn(client.buy(fixture.for_sale.clone(), buyer));
        }
        load
    }

    fn client(&self, url: &str, user: &TestUser) -> Client {
        Client {
            http: http(),
            url: url.to_owned(),
            cookie: user.cookie.clone(),
            stop: self.stop.clone(),
            log: self.log.clone(),
        }
    }

    /// A look at the log so far.
    pub(crate) fn with_log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.log.lock().unwrap())
    }

    /// Waits until `count` writes sent at or after `since` succeeded.
    pub(crate) async fn acked_since(&self, since: Instant, count: usize, within: Duration) {
        eventually(&format!("{count} writes to succeed"), within, || async {
            (self.with_log(|log| log.acked_since(since)) >= count).then_some(())
        })
        .await;
    }

    /// Stops the load once every client finished its request in flight (a buyer also its
    /// cancellation); returns what it saw.
    pub(crate) async fn stop(mut self) -> Log {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// One client of the load.
struct Client {
    http: reqwest::Client,
    url: String,
    cookie: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (Option<StatusCode>, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("cookie", &self.cookie);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let sent = Instant::now();
        let (status, body) = match request.send().await {
            Ok(response) => {
                let status = response.status();
                (Some(status), response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (None, Value::Null),
        };
        let took = sent.elapsed();
        self.log
            .lock()
            .unwrap()
            .records
            .push(Record { sent, took, status });
        (status, body)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Updates its tickets in turn, each to a new price, until stopped.
    async fn update(self, own: Vec<String>) {
        let mut round = 0_u32;
        while !self.stopped() {
            round += 1;
            for (i, id) in own.iter().enumerate() {
                let price = f64::from(round) + i as f64 / 100.0;
                let body = json!({"title": format!("ticket r{round}"), "price": price});
                let path = format!("/api/tickets/{id}");
                let (status, ticket) = self.send(reqwest::Method::PUT, &path, Some(body)).await;
                if status == Some(StatusCode::OK) {
                    let version = ticket["version"].as_i64().unwrap();
                    let mut log = self.log.lock().unwrap();
                    log.acked.insert(id.clone(), (version, price));
                }
                tokio::time::sleep(PACE).await;
                if self.stopped() {
                    return;
                }
            }
        }
    }

    /// Tries to buy each ticket in turn (the other buyer races for the same one), and cancels
    /// what it got, until stopped.
    async fn buy(self, tickets: Vec<String>, offset: usize) {
        for id in tickets.iter().cycle().skip(offset) {
            if self.stopped() {
                return;
            }
            let body = Some(json!({"ticketId": id}));
            let (status, order) = self.send(reqwest::Method::POST, "/api/orders", body).await;
            if status == Some(StatusCode::CREATED) {
                let order = order["id"].as_str().unwrap().to_owned();
                self.log
                    .lock()
                    .unwrap()
                    .orders
                    .push((order.clone(), id.clone()));
                tokio::time::sleep(PACE).await;
                self.cancel(&order).await;
            }
            tokio::time::sleep(PACE).await;
        }
    }

    /// Cancels `order` until the answer is 204 (a failure says nothing of whether it was).
    async fn cancel(&self, order: &str) {
        let path = format!("/api/orders/{order}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let (status, _) = self.send(reqwest::Method::DELETE, &path, None).await;
            if status == Some(StatusCode::NO_CONTENT) {
                self.log.lock().unwrap().cancelled.insert(order.to_owned());
                return;
            }
            tokio::time::sleep(PACE * 10).await;
        }
    }
}

/// What the databases hold, read at one moment.
pub(crate) struct Stores {
    /// Each ticket: its version, price and the order holding it.
    tickets: HashMap<ObjectId, (i64, f64, Option<String>)>,
    /// Orders' replica of each ticket: its version and price.
    replica: HashMap<ObjectId, (i64, f64)>,
    /// Each order: its ticket, status and whether it holds its ticket.
    orders: HashMap<ObjectId, (ObjectId, String, bool)>,
}

async fn all(collection: mongodb::Collection<Document>) -> Vec<Document> {
    collection
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn version(record: &Document) -> i64 {
    match record.get("version") {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        other => panic!("bad version {other:?} in {record}"),
    }
}

impl Stores {
    pub(crate) async fn read(mongo: &mongodb::Client) -> Self {
        let tickets = all(mongo.database("tickets").collection("tickets")).await;
        let replica = all(mongo.database("orders").collection("tickets")).await;
        let orders = all(mongo.database("orders").collection("orders")).await;
        let id = |record: &Document| record.get_object_id("_id").unwrap();
        Self {
            tickets: tickets
                .iter()
                .map(|t| {
                    let order = t.get_str("orderId").ok().map(str::to_owned);
                    (id(t), (version(t), t.get_f64("price").unwrap(), order))
                })
                .collect(),
            replica: replica
                .iter()
                .map(|t| (id(t), (version(t), t.get_f64("price").unwrap())))
                .collect(),
            orders: orders
                .iter()
                .map(|o| {
                    let ticket = o.get_object_id("ticketId").unwrap();
                    let status = o.get_str("status").unwrap().to_owned();
                    (
                        id(o),
                        (ticket, status, o.get_bool("active").unwrap_or(false)),
                    )
                })
                .collect(),
        }
    }

    /// Tickets whose replica differs from them, or that an order holds in one service and not
    /// the other; empty once the events of every change have been applied.
    pub(crate) fn unsettled(&self) -> Vec<String> {
        let mut unsettled = Vec::new();
        for (id, (version, price, order)) in &self.tickets {
            if self.replica.get(id) != Some(&(*version, *price)) {
                unsettled.push(format!("{id}: replica {:?}", self.replica.get(id)));
            }
            let holders: Vec<String> = self
                .orders
                .iter()
                .filter(|(_, (ticket, _, active))| ticket == id && *active)
                .map(|(order, _)| order.to_hex())
                .collect();
            if holders.as_slice() != order.as_slice() {
                unsettled.push(format!(
                    "{id}: held by {order:?}, active orders {holders:?}"
                ));
            }
        }
        unsettled
    }

    /// What the load was told that the stores do not hold: updates answered 200 that are not
    /// in tickets, orders answered 201 that orders lacks, cancellations answered 204 that did
    /// not stick, tickets held by more than one order.
    pub(crate) fn lost(&self, log: &Log) -> Vec<String> {
        let mut lost = Vec::new();
        for (id, (acked, price)) in &log.acked {
            match self.tickets.get(&id.parse().unwrap()) {
                Some((version, stored, _)) if version > acked => {}
                Some((version, stored, _)) if version == acked && stored == price => {}
                other => lost.push(format!(
                    "update {id} v{acked} at {price}: tickets has {other:?}"
                )),
            }
        }
        for (order, ticket) in &log.orders {
            match self.orders.get(&order.parse().unwrap()) {
                Some((held, status, _)) if held.to_hex() == *ticket => {
                    if log.cancelled.contains(order) && status != "cancelled" {
                        lost.push(format!("cancellation of {order}: status {status}"));
                    }
                }
                other => lost.push(format!("order {order} for {ticket}: orders has {other:?}")),
            }
        }
        let mut holders: HashMap<ObjectId, usize> = HashMap::new();
        for (ticket, _, active) in self.orders.values() {
            *holders.entry(*ticket).or_default() += usize::from(*active);
        }
        for (ticket, count) in holders {
            if count > 1 {
                lost.push(format!("ticket {ticket} held by {count} orders"));
            }
        }
        lost
    }
}

/// How the requests around a fault went, relative to the fault.
#[derive(Debug)]
pub(crate) struct Outage {
    pub(crate) requests: usize,
    pub(crate) failed: usize,
    pub(crate) by_status: Vec<(Option<StatusCode>, usize)>,
    /// From the first failed request's sending to the last one's answer, seconds after the
    /// fault; `None` when none failed.
    pub(crate) window: Option<(f64, f64)>,
    pub(crate) slowest: Duration,
}

impl Outage {
    pub(crate) fn of(log: &Log, fault: Instant) -> Self {
        let since = |at: Instant| {
            at.saturating_duration_since(fault).as_secs_f64()
                - fault.saturating_duration_since(at).as_secs_f64()
        };
        let failed: Vec<&Record> = log
            .records
            .iter()
            .filter(|r| {
                !r.status
                    .is_some_and(|s| s.is_success() || s.is_client_error())
            })
            .collect();
        let mut by_status: HashMap<Option<StatusCode>, usize> = HashMap::new();
        for record in &failed {
            *by_status.entry(record.status).or_default() += 1;
        }
        let mut by_status: Vec<_> = by_status.into_iter().collect();
        by_status.sort_by_key(|(status, _)| status.map(|s| s.as_u16()));
        let window = (!failed.is_empty()).then(|| {
            let first = failed
                .iter()
                .map(|r| since(r.sent))
                .fold(f64::MAX, f64::min);
            let last = failed
                .iter()
                .map(|r| since(r.sent + r.took))
                .fold(f64::MIN, f64::max);
            (first, last)
        });
        Self {
            requests: log.records.len(),
            failed: failed.len(),
            by_status,
            window,
            slowest: log.records.iter().map(|r| r.took).max().unwrap_or_default(),
        }
    }

    /// Fails unless every failure was a 503 or 502 (never a 500, never a missing answer).
    #[track_caller]
    pub(crate) fn assert_only_unavailable(&self) {
        for (status, count) in &self.by_status {
            assert!(
                matches!(
                    *status,
                    Some(StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY)
                ),
                "{count} requests answered {status:?}: {self}"
            );
        }
    }
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, count)| match status {
                Some(status) => format!("{count}× {}", status.as_u16()),
                None => format!("{count}× no answer"),
            })
            .collect();
        write!(f, "{} requests, {} failed", self.requests, self.failed)?;
        if let Some((first, last)) = self.window {
            write!(
                f,
                " ({}) from {first:+.1} s to {last:+.1} s",
                statuses.join(", ")
            )?;
        }
        write!(f, "; slowest answer {:.1} s", self.slowest.as_secs_f64())
    }
}
