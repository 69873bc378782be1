//! The scenarios, their fixtures, set up through the public API — fresh users, seeded tickets,
//! pools of tickets whose replica reached orders — and the requests each simulated client sends.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::header::{HeaderValue, LINK};
use hyper::{Method, StatusCode};
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Conn, Reply, Target, next_link};
use super::load::{Recorder, Worker};

/// Every bench user's password.
const PASSWORD: &str = "bench-password";
/// Connections used to seed fixtures.
const SETUP_CONNECTIONS: usize = 16;
/// Tickets per client in the update and order pools: each client works on its own tickets,
/// so the numbers are of the endpoints, not of clients contending for one record.
const POOL_PER_CLIENT: usize = 2;
/// Tickets each buy client may buy (a bought ticket is gone): more than a client completes
/// in a warm-up and a window of the default lengths at the targets' rates.
const BUYS_PER_CLIENT: usize = 120;
/// The longest one purchase may take before it counts as failed.
const BUY_WAIT: Duration = Duration::from_secs(10);
/// How long a seeded ticket may take to reach the orders replica.
const REPLICA_WAIT: Duration = Duration::from_secs(30);
const TICKET: &str = r#"{"title":"bench","price":10}"#;

/// A scenario of `ticketing bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `GET /api/users/currentuser` signed in.
    #[value(name = "currentuser")]
    CurrentUser,
    /// `POST /api/users/signin`.
    Signin,
    /// `POST /api/tickets`.
    CreateTicket,
    /// `PUT /api/tickets/:id` on the caller's tickets.
    UpdateTicket,
    /// `GET /api/tickets?limit=100`.
    ListTickets,
    /// `POST /api/orders` then `DELETE /api/orders/:id`.
    CreateCancelOrder,
    /// `POST /api/orders`, `POST /api/payments` (`tok_visa`, the local gateway), then `GET
    /// /api/orders/:id` until `complete`: one purchase, timed as the buyer sees it.
    Buy,
    /// Ticket update → visible in orders' replica, at `--lag-rate`.
    Lag,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Self; 8] = [
        Self::CurrentUser,
        Self::Signin,
        Self::CreateTicket,
        Self::UpdateTicket,
        Self::ListTickets,
        Self::CreateCancelOrder,
        Self::Buy,
        Self::Lag,
    ];

    /// The name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Self::CurrentUser => "currentuser",
            Self::Signin => "signin",
            Self::CreateTicket => "create-ticket",
            Self::UpdateTicket => "update-ticket",
            Self::ListTickets => "list-tickets",
            Self::CreateCancelOrder => "create-cancel-order",
            Self::Buy => "buy",
            Self::Lag => "lag",
        }
    }
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

/// What a scenario's client sends, prepared so that a step allocates little.
pub(crate) enum Plan {
    /// `GET /api/users/currentuser` with this cookie.
    CurrentUser(HeaderValue),
    /// `POST /api/users/signin` with this body.
    Signin(Bytes),
    /// `POST /api/tickets` as this user.
    CreateTicket(HeaderValue),
    /// `PUT /api/tickets/:id` over these paths in turn.
    UpdateTicket {
        cookie: HeaderValue,
        paths: Vec<String>,
        n: usize,
    },
    /// `GET /api/tickets?limit=100`.
    ListTickets,
    /// `POST /api/orders` for these bodies' tickets in turn, then `DELETE` of the order.
    CreateCancelOrder {
        cookie: HeaderValue,
        bodies: Vec<Bytes>,
        n: usize,
    },
    /// Buys these bodies' tickets, each once, in turn.
    Buy {
        cookie: HeaderValue,
        bodies: std::vec::IntoIter<Bytes>,
    },
}

/// A simulated client: its connection and what it sends.
pub(crate) struct HttpWorker {
    conn: Conn,
    plan: Plan,
}

impl HttpWorker {
    pub(crate) fn new(conn: Conn, plan: Plan) -> Self {
        Self { conn, plan }
    }
}

/// Builds and sends one request through the recorder.
async fn exchange(
    conn: &mut Conn,
    recorder: &mut Recorder,
    method: Method,
    path: &str,
    cookie: Option<&HeaderValue>,
    body: Option<Bytes>,
) -> Option<Reply> {
    match conn.target().request(method, path, cookie, body) {
        Ok(request) => recorder.exchange(conn, request).await,
        Err(error) => {
            recorder.record(Instant::now(), Err(format!("request: {error}")));
            None
        }
    }
}

impl Worker for HttpWorker {
    async fn step(&mut self, recorder: &mut Recorder) {
        let conn = &mut self.conn;
        match &mut self.plan {
            Plan::CurrentUser(cookie) => {
                let path = "/api/users/currentuser";
                exchange(conn, recorder, Method::GET, path, Some(cookie), None).await;
            }
            Plan::Signin(body) => {
                let body = Some(body.clone());
                exchange(
                    conn,
                    recorder,
                    Method::POST,
                    "/api/users/signin",
                    None,
                    body,
                )
                .await;
            }
            Plan::CreateTicket(cookie) => {
                let body = Some(Bytes::from_static(TICKET.as_bytes()));
                exchange(
                    conn,
                    recorder,
                    Method::POST,
                    "/api/tickets",
                    Some(cookie),
                    body,
                )
                .await;
            }
            Plan::UpdateTicket { cookie, paths, n } => {
                *n += 1;
                let path = &paths[*n % paths.len()];
                let body = format!(r#"{{"title":"bench","price":{}}}"#, *n % 1000 + 1);
                let body = Some(Bytes::from(body));
                exchange(conn, recorder, Method::PUT, path, Some(cookie), body).await;
            }
            Plan::ListTickets => {
                let path = "/api/tickets?limit=100";
                exchange(conn, recorder, Method::GET, path, None, None).await;
            }
            Plan::CreateCancelOrder { cookie, bodies, n } => {
                *n += 1;
                let body = Some(bodies[*n % bodies.len()].clone());
                let Some(created) = exchange(
                    conn,
                    recorder,
                    Method::POST,
                    "/api/orders",
                    Some(cookie),
                    body,
                )
                .await
                else {
                    return;
                };
                match created.json::<Created>() {
                    Ok(order) => {
                        let path = format!("/api/orders/{}", order.id);
                        exchange(conn, recorder, Method::DELETE, &path, Some(cookie), None).await;
                    }
                    Err(error) => recorder.record(Instant::now(), Err(format!("body: {error}"))),
                }
            }
            Plan::Buy { cookie, bodies } => {
                let Some(body) = bodies.next() else {
                    recorder.record(Instant::now(), Err("no ticket left to buy".to_owned()));
                    // Out of tickets: wait out the window rather than spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return;
                };
                let sent = Instant::now();
                let outcome = buy(conn, cookie, body).await;
                recorder.record(sent, outcome);
            }
        }
    }
}

/// One request of a purchase as `cookie`'s user; a failure as its error kind.
async fn send(
    conn: &mut Conn,
    cookie: &HeaderValue,
    method: Method,
    path: &str,
    body: Option<Bytes>,
) -> Result<Reply, String> {
    let request = conn
        .target()
        .request(method, path, Some(cookie), body)
        .map_err(|e| format!("request: {e}"))?;
    conn.send(request)
        .await
        .map_err(|e| format!("transport: {e}"))
}

/// One purchase: order, pay, and read the order until it is complete; the first failure.
async fn buy(conn: &mut Conn, cookie: &HeaderValue, order: Bytes) -> Result<(), String> {
    let deadline = Instant::now() + BUY_WAIT;
    let created = send(conn, cookie, Method::POST, "/api/orders", Some(order)).await?;
    if created.status != StatusCode::CREATED {
        return Err(format!("order {}", created.status.as_u16()));
    }
    let id = created
        .json::<Created>()
        .map_err(|e| format!("body: {e}"))?
        .id;
    let payment = Bytes::from(json!({"token": "tok_visa", "orderId": id}).to_string());
    // Payments learns of the order from its event: until then the order is 404 there.
    loop {
        let paid = send(
            conn,
            cookie,
            Method::POST,
            "/api/payments",
            Some(payment.clone()),
        )
        .await?;
        match paid.status {
            StatusCode::CREATED => break,
            StatusCode::NOT_FOUND if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            status => return Err(format!("payment {}", status.as_u16())),
        }
    }
    let path = format!("/api/orders/{id}");
    loop {
        let shown = send(conn, cookie, Method::GET, &path, None).await?;
        if shown.status != StatusCode::OK {
            return Err(format!("show {}", shown.status.as_u16()));
        }
        let order: Value = shown.json().map_err(|e| format!("body: {e}"))?;
        if order["status"] == "complete" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("not complete within 10 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The users and tickets the selected scenarios need.
pub(crate) struct Fixture {
    seller: HeaderValue,
    /// One per client: a user may hold only a few open orders at once.
    buyers: Vec<HeaderValue>,
    signin: Bytes,
    update_pool: Vec<String>,
    order_pool: Vec<String>,
    /// Tickets for sale to the buy scenario, each bought once.
    buy_pool: Vec<String>,
}

impl Fixture {
    /// Signs up fresh users and seeds what `scenarios` need; `log` hears what is being done.
    pub(crate) async fn prepare(
        target: &Target,
        scenarios: &[Scenario],
        clients: usize,
        list_tickets: usize,
        log: impl Fn(&str),
    ) -> anyhow::Result<Self> {
        let mut conn = Conn::new(target.clone());
        log("signing up the bench users");
        let (_, seller) = signup(&mut conn, "seller").await?;
        let (email, _) = signup(&mut conn, "signin").await?;
        let signin = Bytes::from(json!({"email": email, "password": PASSWORD}).to_string());
        let pool = clients * POOL_PER_CLIENT;

        let mut update_pool = Vec::new();
        if scenarios.contains(&Scenario::UpdateTicket) {
            log(&format!("creating {pool} tickets to update"));
            update_pool = create_tickets(target, &seller, pool).await?;
        }
        if scenarios.contains(&Scenario::ListTickets) {
            let listed = count_listed(&mut conn, list_tickets).await?;
            if listed < list_tickets {
                let missing = list_tickets - listed;
                log(&format!(
                    "creating {missing} tickets to list ({listed} listed)"
                ));
                create_tickets(target, &seller, missing).await?;
            }
        }
        let mut order_pool = Vec::new();
        let mut buy_pool = Vec::new();
        let mut buyers = Vec::new();
        let buying = scenarios.contains(&Scenario::Buy);
        if scenarios.contains(&Scenario::CreateCancelOrder) || buying {
            log(&format!("signing up {clients} buyers"));
            for _ in 0..clients {
                buyers.push(signup(&mut conn, "buyer").await?.1);
            }
        }
        if scenarios.contains(&Scenario::CreateCancelOrder) {
            log(&format!(
                "creating {pool} tickets to order and waiting for their orders replica"
            ));
            order_pool = create_tickets(target, &seller, pool).await?;
            await_replicas(target, &order_pool).await?;
        }
        if buying {
            let count = clients * BUYS_PER_CLIENT;
            log(&format!(
                "creating {count} tickets to buy and waiting for their orders replica"
            ));
            buy_pool = create_tickets(target, &seller, count).await?;
            await_replicas(target, &buy_pool).await?;
        }
        Ok(Self {
            seller,
            buyers,
            signin,
            update_pool,
            order_pool,
            buy_pool,
        })
    }

    /// The clients of an HTTP scenario (none for lag, which drives itself).
    pub(crate) fn workers(
        &self,
        scenario: Scenario,
        target: &Target,
        clients: usize,
    ) -> Vec<HttpWorker> {
        (0..clients)
            .filter_map(|i| {
                let plan = match scenario {
                    Scenario::CurrentUser => Plan::CurrentUser(self.seller.clone()),
                    Scenario::Signin => Plan::Signin(self.signin.clone()),
                    Scenario::CreateTicket => Plan::CreateTicket(self.seller.clone()),
                    Scenario::UpdateTicket => Plan::UpdateTicket {
                        cookie: self.seller.clone(),
                        paths: share(&self.update_pool, i, clients)
                            .map(|id| format!("/api/tickets/{id}"))
                            .collect(),
                        n: 0,
                    },
                    Scenario::ListTickets => Plan::ListTickets,
                    Scenario::CreateCancelOrder => Plan::CreateCancelOrder {
                        cookie: self.buyers.get(i)?.clone(),
                        bodies: share(&self.order_pool, i, clients)
                            .map(|id| Bytes::from(json!({"ticketId": id}).to_string()))
                            .collect(),
                        n: 0,
                    },
                    Scenario::Buy => Plan::Buy {
                        cookie: self.buyers.get(i)?.clone(),
                        bodies: share(&self.buy_pool, i, clients)
                            .map(|id| Bytes::from(json!({"ticketId": id}).to_string()))
                            .collect::<Vec<_>>()
                            .into_iter(),
                    },
                    Scenario::Lag => return None,
                };
                Some(HttpWorker::new(Conn::new(target.clone()), plan))
            })
            .collect()
    }
}

/// Client `i`'s share of a pool: every `clients`-th item from the `i`-th.
fn share(pool: &[String], i: usize, clients: usize) -> impl Iterator<Item = &String> {
    pool.iter().skip(i).step_by(clients.max(1))
}

/// Signs up a fresh user; returns its email and `session=…` cookie.
async fn signup(conn: &mut Conn, purpose: &str) -> anyhow::Result<(String, HeaderValue)> {
    let email = format!("bench-{purpose}-{}@test.dev", ObjectId::new().to_hex());
    let body = json!({"email": email, "password": PASSWORD});
    let reply = conn
        .call(Method::POST, "/api/users/signup", None, Some(&body))
        .await?;
    let cookie = reply
        .session_cookie()
        .context("signup set no session cookie")?;
    Ok((email, cookie))
}

/// Creates `count` tickets as `cookie`'s user over several connections; returns their ids.
async fn create_tickets(
    target: &Target,
    cookie: &HeaderValue,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let connections = SETUP_CONNECTIONS.min(count);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let mine = count / connections + usize::from(c < count % connections);
        let mut conn = Conn::new(target.clone());
        let cookie = cookie.clone();
        let body: Value = serde_json::from_str(TICKET)?;
        tasks.spawn(async move {
            let mut ids = Vec::with_capacity(mine);
            for _ in 0..mine {
                let reply = conn
                    .call(Method::POST, "/api/tickets", Some(&cookie), Some(&body))
                    .await?;
                ids.push(reply.json::<Created>()?.id);
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        ids.extend(joined??);
    }
    Ok(ids)
}

/// How many unreserved tickets are listed, counting pages through their `Link` until `want`.
async fn count_listed(conn: &mut Conn, want: usize) -> anyhow::Result<usize> {
    let mut path = "/api/tickets?limit=500".to_owned();
    let mut listed = 0;
    loop {
        let reply = conn.call(Method::GET, &path, None, None).await?;
        listed += reply.json::<Vec<Value>>()?.len();
        let next = reply
            .headers
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        match next {
            Some(next) if listed < want => path = next.to_owned(),
            _ => return Ok(listed),
        }
    }
}

/// Waits until the orders service's replica has every ticket of `ids`.
async fn await_replicas(target: &Target, ids: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + REPLICA_WAIT;
    let connections = SETUP_CONNECTIONS.min(ids.len()).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let mine: Vec<String> = share(ids, c, connections).cloned().collect();
        let mut conn = Conn::new(target.clone());
        tasks.spawn(async move {
            for id in mine {
                let path = format!("/api/orders/tickets/{id}");
                loop {
                    let request = conn.target().request(Method::GET, &path, None, None)?;
                    let reply = conn.send(request).await?;
                    match reply.status {
                        StatusCode::OK => break,
                        StatusCode::NOT_FOUND if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        StatusCode::NOT_FOUND => {
                            bail!(
                                "ticket {id} did not reach the orders replica in {REPLICA_WAIT:?}"
                            )
                        }
                        status => bail!("GET {path}: {status}"),
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn each_client_gets_its_own_share_of_a_pool() {
        let pool: Vec<String> = (0..6).map(|n| n.to_string()).collect();
        let shares: Vec<Vec<&String>> = (0..3).map(|i| share(&pool, i, 3).collect()).collect();
        assert_eq!(shares[0], ["0", "3"]);
        assert_eq!(shares[1], ["1", "4"]);
        assert_eq!(shares[2], ["2", "5"]);
    }
}
