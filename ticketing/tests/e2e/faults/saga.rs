//! The payment saga with one of its services SIGKILLed while a charge is in flight and started
//! again after the order's hold ran out: a charge slower than the hold (8 s against 5 s) still
//! ends with the order `complete` and its one charge standing, or `cancelled` with that charge
//! refunded exactly once — never charged and cancelled.
//!
//! The victim runs as a child process; the other services run in this process; an ingress in
//! front of both routes as the cluster's does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{FakeStripe, TestApp, TestResponse, TestUser, WAIT, eventually};
use ticketing::ingress::Upstream;
use ticketing::up::ServiceName;
use tokio_util::sync::CancellationToken;

use super::PrivateStack;

/// The order's hold, in seconds.
const HOLD: &str = "5";
/// How long the fake Stripe takes to answer a charge it has made.
const LATENCY: Duration = Duration::from_secs(8);
/// Bound on the saga's end after the restart. An attempt whose process died is looked at
/// after the charge timeout (10 s) and 10 s more, then searched (1 s lag) and maybe refunded.
const SETTLE: Duration = Duration::from_secs(60);
/// The services of the saga.
const SAGA: [ServiceName; 5] = [
    ServiceName::Auth,
    ServiceName::Tickets,
    ServiceName::Orders,
    ServiceName::Expiration,
    ServiceName::Payments,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_killed_mid_charge_ends_complete_or_refunded() {
    survives_kill_mid_charge(ServiceName::Payments).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_mid_charge_ends_complete_or_refunded() {
    survives_kill_mid_charge(ServiceName::Orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_killed_mid_charge_ends_complete_or_refunded() {
    survives_kill_mid_charge(ServiceName::Expiration).await;
}

async fn survives_kill_mid_charge(victim: ServiceName) {
    let name = victim.as_str();
    let stripe = FakeStripe::start().await;
    let stack = PrivateStack::start().with_env(
        stripe.env().into_iter().chain(
            [
                ("PAYMENTS_GATEWAY", "stripe"),
                ("STRIPE_TIMEOUT_SECONDS", "10"),
                ("STRIPE_SEARCH_LAG_SECONDS", "1"),
                ("PAYMENTS_SWEEP_SECONDS", "0.2"),
                ("ORDER_EXPIRATION_SECONDS", HOLD),
            ]
            .map(|(k, v)| (k, v.to_owned())),
        ),
    );
    let others: Vec<ServiceName> = SAGA.into_iter().filter(|s| *s != victim).collect();
    let here = stack.serve(&others).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = stack.log(victim);
    eprintln!("faults/saga: the {name} process logs to {}", log.display());
    let ready = || async move {
        let response = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
        (response.ok()?.status() == StatusCode::OK).then_some(())
    };
    let mut process = stack.spawn(victim, port, &log);
    eventually("the victim to be ready", WAIT, ready).await;
    let app = Arc::new(TestApp::at(
        stack.context.clone(),
        ingress(&here.address, &others, victim, port).await,
    ));

    let seller = app.signup("seller@test.dev", "password").await;
    let buyer = app.signup("buyer@test.dev", "password").await;
    let ticket = app.create_ticket(&seller, "concert", 25.0).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = app.order_ticket(&buyer, &ticket).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let expires_at =
        mongodb::bson::DateTime::parse_rfc3339_str(order["expiresAt"].as_str().unwrap()).unwrap();
    stripe.set(|s| s.latency = LATENCY);
    let started = Instant::now();
    let paying = tokio::spawn(pay(Arc::clone(&app), buyer.clone(), order_id.clone()));
    eventually("the card to be charged", WAIT, || async {
        (!stripe.charges_for(&order_id).is_empty()).then_some(())
    })
    .await;
    process.kill();
    let killed = started.elapsed();
    // Down until the hold has run out, so that the restart lands mid-saga.
    let left = expires_at.timestamp_millis() - mongodb::bson::DateTime::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(left).unwrap_or(0) + 500,
    ))
    .await;
    let restarted = started.elapsed();
    let mut process = stack.spawn(victim, port, &log);
    eventually("the victim to be ready again", WAIT, ready).await;

    let end = eventually("the saga to end", SETTLE, || {
        settled(&app, &buyer, &order_id)
    })
    .await;
    let ended = started.elapsed();
    let answer = paying.await.unwrap();
    let charges = stripe.charges_for(&order_id);
    assert_eq!(charges.len(), 1, "one attempt, one charge: {charges:?}");
    let refunds: Vec<_> = stripe
        .refunds()
        .into_iter()
        .filter(|r| r.charge == charges[0].id)
        .collect();
    let attempt = |state: &'static str| {
        let stack = &stack;
        let order_id = order_id.as_str();
        async move {
            let payments = stack.database("payments").await;
            let stored = payments
                .collection::<mongodb::bson::Document>("orders")
                .find_one(mongodb::bson::doc! {
                    "_id": mongodb::bson::oid::ObjectId::parse_str(order_id).unwrap()
                })
                .await
                .unwrap()?;
            (stored.get_document("payment").ok()?.get_str("state").ok()? == state).then_some(())
        }
    };
    if end["status"] == "complete" {
        assert!(charges[0].standing(), "{charges:?}");
        assert!(refunds.is_empty(), "{refunds:?}");
        eventually("payments to hold the attempt succeeded", WAIT, || {
            attempt("succeeded")
        })
        .await;
        app.ticket_where(&ticket, "the ticket kept by the order", |t| {
            t["orderId"] == order_id.as_str()
        })
        .await;
    } else {
        assert_eq!(refunds.len(), 1, "{:?}", stripe.refunds());
        assert!(!charges[0].standing(), "{charges:?}");
        assert_eq!(end["payment"]["stripeId"], charges[0].id.as_str());
        eventually("payments to hold the attempt refunded", WAIT, || {
            attempt("refunded")
        })
        .await;
        app.ticket_where(&ticket, "the ticket back on sale", |t| {
            t.get("orderId").is_none()
        })
        .await;
    }
    assert_answer(victim, &answer, &end);
    tokio::task::block_in_place(|| process.stop()).unwrap();
    eprintln!(
        "faults/saga: {name} SIGKILLed {:.1} s into an 8 s charge (hold {HOLD} s), started \
         again at {:.1} s; the buyer was answered {}; order {} (payment {}) at {:.1} s",
        killed.as_secs_f64(),
        restarted.as_secs_f64(),
        answer.status,
        end["status"],
        end["payment"]["status"],
        ended.as_secs_f64(),
    );
    let _ = std::fs::remove_file(&log);
}

/// What the buyer was told agrees with how the saga ended; a payments process killed holding
/// the request could tell nothing (the ingress answers 502).
fn assert_answer(victim: ServiceName, answer: &TestResponse, end: &Value) {
    if victim == ServiceName::Payments {
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    } else if end["status"] == "complete" {
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    } else {
        answer.assert_error(
            StatusCode::BAD_REQUEST,
            "The order was cancelled while it was being paid; the charge will be refunded",
        );
    }
}

/// Pays for the order with a card, once payments knows the order (its replica may lag).
async fn pay(app: Arc<TestApp>, buyer: TestUser, order_id: String) -> TestResponse {
    eventually("payments to know the order", WAIT, || async {
        let body = json!({"token": "tok_visa", "orderId": order_id});
        let response = app.post("/api/payments", Some(&buyer.cookie), body).await;
        (response.status != StatusCode::NOT_FOUND).then_some(response)
    })
    .await
}

/// The order once it is `complete`, or `cancelled` with its payment refunded.
async fn settled(app: &TestApp, buyer: &TestUser, order_id: &str) -> Option<Value> {
    let body = app
        .get(&format!("/api/orders/{order_id}"), Some(&buyer.cookie))
        .await
        .body;
    let done = body["status"] == "complete"
        || (body["status"] == "cancelled" && body["payment"]["status"] == "refunded");
    done.then_some(body)
}

/// An ingress on a free port: the victim's routes to its process on `port`, every other
/// service's to this process at `here`; returns its URL.
async fn ingress(here: &str, others: &[ServiceName], victim: ServiceName, port: u16) -> String {
    let here = here.trim_start_matches("http://").parse().unwrap();
    let upstreams = others
        .iter()
        .map(|&service| Upstream {
            service,
            addresses: vec![here],
        })
        .chain([Upstream {
            service: victim,
            addresses: vec![([127, 0, 0, 1], port).into()],
        }])
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ticketing::ingress::serve(
        listener,
        upstreams,
        CancellationToken::new(),
    ));
    url
}
