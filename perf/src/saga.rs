//! `ticketing saga-bench`: how late expirations land and how long payments take.
//!
//! Creates tickets and orders against a running stack; pays half of them with `tok_visa`
//! (timing each payment) and lets the other half expire, then measures the time from each
//! order's `expiresAt` until it reads `cancelled`. Run it against a stack started with a short
//! `ORDER_EXPIRATION_SECONDS` (e.g. 5).

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Arguments of `ticketing saga-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the ingress's routes are served.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub base_url: String,
    /// Orders that expire (and as many that are paid).
    #[arg(long, default_value_t = 100)]
    pub orders: usize,
}

/// Latency distributions of one run.
#[derive(Debug, Default)]
pub struct SagaReport {
    /// From `expiresAt` to the order reading `cancelled`, sorted.
    pub expiry_lags: Vec<Duration>,
    /// `POST /api/payments` round trips, sorted.
    pub payments: Vec<Duration>,
    /// Orders that did not reach the expected state in time.
    pub failures: usize,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

impl fmt::Display for SagaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        for (name, values) in [
            ("expiry lag", &self.expiry_lags),
            ("payment", &self.payments),
        ] {
            writeln!(
                f,
                "{name:<11} n={} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                values.len(),
                ms(quantile(values, 0.5)),
                ms(quantile(values, 0.99)),
                ms(quantile(values, 1.0))
            )?;
        }
        write!(f, "failures:   {}", self.failures)
    }
}

struct Buyer {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Buyer {
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let response = request
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Lists a ticket and orders it once the orders replica has it; returns (order id, expiresAt).
    async fn order(&self) -> anyhow::Result<(String, SystemTime)> {
        let (_, ticket) = self
            .send(
                self.http
                    .post(format!("{}/api/tickets", self.base))
                    .json(&json!({"title": "saga", "price": 12.5})),
            )
            .await?;
        let ticket_id = ticket["id"]
            .as_str()
            .context("ticket without id")?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, order) = self
                .send(
                    self.http
                        .post(format!("{}/api/orders", self.base))
                        .json(&json!({"ticketId": ticket_id})),
                )
                .await?;
            if status == StatusCode::CREATED {
                let id = order["id"].as_str().context("order without id")?.to_owned();
                let expires = order["expiresAt"]
                    .as_str()
                    .context("order without expiresAt")?;
                let expires = mongodb::bson::DateTime::parse_rfc3339_str(expires)?.to_system_time();
                return Ok((id, expires));
            }
            if Instant::now() > deadline {
                bail!("ticket {ticket_id} never reached the orders replica ({status})");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Pays once payments knows the order; returns the round trip of the successful call.
    async fn pay(&self, order_id: &str) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let started = Instant::now();
            let (status, body) = self
                .send(
                    self.http
                        .post(format!("{}/api/payments", self.base))
                        .json(&json!({"token": "tok_visa", "orderId": order_id})),
                )
                .await?;
            if status == StatusCode::CREATED {
                return Ok(started.elapsed());
            }
            if status != StatusCode::NOT_FOUND || Instant::now() > deadline {
                bail!("payment of {order_id} failed: {status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn status(&self, order_id: &str) -> anyhow::Result<String> {
        let (_, order) = self
            .send(
                self.http
                    .get(format!("{}/api/orders/{order_id}", self.base)),
            )
            .await?;
        Ok(order["status"].as_str().unwrap_or_default().to_owned())
    }
}

/// Orders each buyer holds at once: below `MAX_OPEN_ORDERS_PER_USER`'s default of 10.
const ORDERS_PER_BUYER: usize = 5;

/// Runs the measurement against a running stack.
pub async fn run(args: &Args) -> anyhow::Result<SagaReport> {
    common::install_tls_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = args.base_url.trim_end_matches('/').to_owned();
    // A user holds a few open orders at most (MAX_OPEN_ORDERS_PER_USER): enough buyers that
    // every order of the run can be open at once.
    let mut buyers = Vec::new();
    for _ in 0..(args.orders * 2).div_ceil(ORDERS_PER_BUYER) {
        let cookie = crate::client::signup(&http, &base, "saga").await?;
        buyers.push(Buyer {
            http: http.clone(),
            base: base.clone(),
            cookie,
        });
    }
    let mut report = SagaReport::default();

    let orders: Vec<anyhow::Result<(&Buyer, String, SystemTime)>> =
        futures::stream::iter(0..args.orders * 2)
            .map(|n| {
                let buyer = &buyers[n % buyers.len()];
                async move {
                    let (id, expires_at) = buyer.order().await?;
                    Ok((buyer, id, expires_at))
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    let orders: Vec<(&Buyer, String, SystemTime)> =
        orders.into_iter().collect::<anyhow::Result<_>>()?;
    let (to_pay, to_expire) = orders.split_at(args.orders);

    for (buyer, id, _) in to_pay {
        match buyer.pay(id).await {
            Ok(elapsed) => report.payments.push(elapsed),
            Err(_) => report.failures += 1,
        }
    }

    // Poll each expiring order from just before its expiresAt until it reads cancelled.
    let lags: Vec<Option<Duration>> = futures::stream::iter(to_expire.iter().cloned())
        .map(|(buyer, id, expires_at)| {
            async move {
                let wait = expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tokio::time::sleep(wait.saturating_sub(Duration::from_millis(20))).await;
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if buyer.status(&id).await.ok()? == "cancelled" {
                        return SystemTime::now().duration_since(expires_at).ok();
                    }
                    // A hundred pollers at a tight interval would load the stack they measure;
                    // 25 ms bounds the measurement error instead.
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                None
            }
        })
        .buffer_unordered(args.orders.max(1))
        .collect()
        .await;
    for lag in lags {
        match lag {
            Some(lag) => report.expiry_lags.push(lag),
            None => report.failures += 1,
        }
    }
    // Paid orders must have survived their own expiration.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (buyer, id, _) in to_pay {
        if buyer.status(id).await? != "complete" {
            report.failures += 1;
        }
    }
    report.expiry_lags.sort_unstable();
    report.payments.sort_unstable();
    Ok(report)
}
