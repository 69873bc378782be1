//! The payment saga against the fake Stripe: lost answers are reconciled, charges that land on
//! cancelled orders are refunded once, outages are waited out, and many payments at once
//! charge each order exactly once.

use std::time::Duration;

use common::events::{OrderCancelled, TicketRef};
use futures::future::join_all;
use mongodb::bson::{Document, doc, oid::ObjectId};
use reqwest::StatusCode;
use test_support::{
    FakeStripe, TestApp, TestContext, TestUser, WAIT, assert_one_created, eventually, fake_user,
};

use crate::payments::{pay, replicated_order, stored};

/// Long enough that no order of these tests expires while they run.
const HOLD: Duration = Duration::from_secs(900);

/// Payments on the fake Stripe: 2 s gateway timeout, 1 s search lag, 0.2 s sweeps.
async fn spawn_with_stripe() -> (TestApp, FakeStripe) {
    spawn_with_stripe_sweeping("0.2").await
}

/// payments on a fake Stripe, its worker looking for work every `sweep` seconds unless woken.
async fn spawn_with_stripe_sweeping(sweep: &str) -> (TestApp, FakeStripe) {
    let stripe = FakeStripe::start().await;
    let context = TestContext::new();
    let service = context
        .build_with::<payments::Config>(|env| {
            stripe
                .env()
                .into_iter()
                .fold(env, |env, (k, v)| env.with(k, v))
                .with("PAYMENTS_GATEWAY", "stripe")
                .with("STRIPE_TIMEOUT_SECONDS", "2")
                .with("STRIPE_SEARCH_LAG_SECONDS", "1")
                .with("PAYMENTS_SWEEP_SECONDS", sweep)
        })
        .await;
    (TestApp::serve(context, vec![service]).await, stripe)
}

async fn cancel(app: &TestApp, order_id: &str) {
    let cancelled = OrderCancelled {
        id: order_id.to_owned(),
        version: 1,
        ticket: TicketRef {
            id: ObjectId::new().to_hex(),
        },
    };
    app.context.bus().await.publish(&cancelled).await.unwrap();
}

async fn attempt_state(app: &TestApp, order_id: &str) -> String {
    let order = stored(app, order_id).await.unwrap();
    order
        .get_document("payment")
        .ok()
        .and_then(|p| p.get_str("state").ok())
        .unwrap_or("none")
        .to_owned()
}

/// Waits until the order's attempt is in `state`.
async fn attempt_reaches(app: &TestApp, order_id: &str, state: &str) {
    eventually(&format!("the attempt {state}"), WAIT, || async {
        (attempt_state(app, order_id).await == state).then_some(())
    })
    .await;
}

/// The events on `subject` about `order_id`.
async fn events_about(app: &TestApp, subject: &str, order_id: &str) -> Vec<serde_json::Value> {
    app.context
        .events()
        .await
        .into_iter()
        .filter(|(s, e)| s == subject && e["orderId"] == order_id)
        .map(|(_, e)| e)
        .collect()
}

fn standing(stripe: &FakeStripe, order_id: &str) -> usize {
    stripe
        .charges_for(order_id)
        .iter()
        .filter(|c| c.standing())
        .count()
}

async fn order_for(app: &TestApp, buyer: &TestUser) -> String {
    replicated_order(app, buyer, HOLD).await
}

#[tokio::test]
async fn a_502_after_charging_is_reconciled_and_the_retry_with_a_new_card_charges_nothing() {
    let (app, stripe) = spawn_with_stripe().await;
    let buyer = fake_user();
    let order_id = order_for(&app, &buyer).await;
    stripe.set(|s| s.fail_after_charge = 1);

    let lost = pay(&app, &buyer, &order_id, "tok_visa").await;
    lost.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service temporarily unavailable",
    );
    // The buyer tries again at once with a new token (Stripe.js makes one per attempt).
    let retry = pay(&app, &buyer, &order_id, "tok_mastercard").await;
    assert_eq!(retry.status, StatusCode::BAD_REQUEST, "{}", retry.body);
    let message = &retry.error_messages()[0];
    assert!(
        message == "A payment for this order is in progress" || message == "Order already paid",
        "{message}"
    );

    attempt_reaches(&app, &order_id, "succeeded").await;
    let created = eventually("payment:created", WAIT, || async {
        let events = events_about(&app, "payment:created", &order_id).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(created.len(), 1);
    pay(&app, &buyer, &order_id, "tok_amex")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "Order already paid");
    assert_eq!(stripe.charges_for(&order_id).len(), 1);
    assert_eq!(standing(&stripe, &order_id), 1);
    assert!(stripe.refunds().is_empty());
}

#[tokio::test]
async fn an_attempt_the_gateway_never_charged_frees_the_order_once_the_search_lag_passed() {
    let (app, stripe) = spawn_with_stripe().await;
    let buyer = fake_user();
    let order_id = order_for(&app, &buyer).await;
    stripe.set(|s| s.unavailable = true);
    pay(&app, &buyer, &order_id, "tok_visa").await.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service temporarily unavailable",
    );
    pay(&app, &buyer, &order_id, "tok_visa").await.assert_error(
        StatusCode::BAD_REQUEST,
        "A payment for this order is in progress",
    );
    assert_eq!(attempt_state(&app, &order_id).await, "unknown");

    // While Stripe is down nothing is decided; once it answers and shows no charge, and the
    // search lag has passed, the order may be paid again.
    stripe.set(|s| s.unavailable = false);
    attempt_reaches(&app, &order_id, "failed").await;
    let paid = pay(&app, &buyer, &order_id, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    assert_eq!(standing(&stripe, &order_id), 1);
}

#[tokio::test]
async fn a_charge_that_lands_after_the_cancellation_is_refunded_exactly_once() {
    let (app, stripe) = spawn_with_stripe().await;
    let buyer = fake_user();
    let order_id = order_for(&app, &buyer).await;
    stripe.set(|s| s.latency = Duration::from_millis(1500));

    let paying = {
        let (app, buyer, order_id) = (&app, &buyer, &order_id);
        async move { pay(app, buyer, order_id, "tok_visa").await }
    };
    let cancelling = async {
        // The charge is made, its answer is on its way: now the order is cancelled.
        eventually("the charge", WAIT, || async {
            (!stripe.charges_for(&order_id).is_empty()).then_some(())
        })
        .await;
        cancel(&app, &order_id).await;
        eventually("the cancellation in payments' replica", WAIT, || async {
            (stored(&app, &order_id)
                .await
                .unwrap()
                .get_str("status")
                .ok()
                == Some("cancelled"))
            .then_some(())
        })
        .await;
    };
    let (answer, ()) = tokio::join!(paying, cancelling);
    answer.assert_error(
        StatusCode::BAD_REQUEST,
        "The order was cancelled while it was being paid; the charge will be refunded",
    );

    attempt_reaches(&app, &order_id, "refunded").await;
    let refunded = eventually("payment:refunded", WAIT, || async {
        let events = events_about(&app, "payment:refunded", &order_id).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    let charge = &stripe.charges_for(&order_id)[0];
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0]["stripeId"], charge.id.as_str());
    assert_eq!(refunded[0]["version"], 1);
    let refunds = stripe.refunds();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].charge, charge.id);
    assert_eq!(standing(&stripe, &order_id), 0);
    assert!(
        events_about(&app, "payment:created", &order_id)
            .await
            .is_empty(),
        "a cancelled order was announced paid"
    );
}

#[tokio::test]
async fn a_cancellation_that_arrives_after_the_payment_refunds_it_and_outages_are_waited_out() {
    let (app, stripe) = spawn_with_stripe().await;
    let buyer = fake_user();
    let order_id = order_for(&app, &buyer).await;
    let paid = pay(&app, &buyer, &order_id, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);

    // Orders cancelled the order before payment:created reached it (an expiration won the
    // race there): its cancellation reaches payments while Stripe is down.
    stripe.set(|s| s.unavailable = true);
    cancel(&app, &order_id).await;
    attempt_reaches(&app, &order_id, "refunding").await;
    // The refund waits, and its failed tries are counted.
    eventually("a failed refund counted, one waiting", WAIT, || async {
        let body = test_support::metrics::scrape(&app).await;
        let sample = |series: &str| test_support::metrics::sample(&body, series);
        let waiting = sample(r#"work_backlog{service="payments",work="refund"}"#);
        let failed = sample(r#"work_done_total{service="payments",work="refund",outcome="error"}"#);
        (waiting == Some(1.0) && failed.is_some_and(|n| n >= 1.0)).then_some(())
    })
    .await;
    assert!(stripe.refunds().is_empty());

    stripe.set(|s| s.unavailable = false);
    eventually(
        "the refund after the outage",
        Duration::from_secs(20),
        || async { (stripe.refunds().len() == 1).then_some(()) },
    )
    .await;
    attempt_reaches(&app, &order_id, "refunded").await;
    assert_eq!(standing(&stripe, &order_id), 0);
}

#[tokio::test]
async fn a_paid_order_cancelled_starts_its_refund_from_the_cancellation_itself() {
    // The worker's sweep (every 60 s) cannot be what finds it: the cancellation must see the
    // charge (unpaid orders take a shorter way) and start the refund.
    let (app, stripe) = spawn_with_stripe_sweeping("60").await;
    let buyer = fake_user();
    let order_id = order_for(&app, &buyer).await;
    let paid = pay(&app, &buyer, &order_id, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    attempt_reaches(&app, &order_id, "succeeded").await;

    cancel(&app, &order_id).await;
    attempt_reaches(&app, &order_id, "refunded").await;
    assert_eq!(stripe.refunds().len(), 1);
    assert_eq!(standing(&stripe, &order_id), 0);
}

#[tokio::test]
async fn an_attempt_left_charging_by_a_crash_is_reconciled_from_the_gateway() {
    let (app, stripe) = spawn_with_stripe().await;
    let buyer = fake_user();
    let order_id = order_for(&app, &buyer).await;
    // What a process killed between the charge and its record leaves: an attempt in
    // `charging` whose lease has lapsed, and the charge at Stripe.
    let payment_id = ObjectId::new();
    let id = ObjectId::parse_str(&order_id).unwrap();
    app.context
        .database("payments")
        .await
        .collection::<Document>("orders")
        .update_one(
            doc! {"_id": id},
            doc! {"$set": {"payment": {
                "id": payment_id, "state": "charging", "number": 1, "amountCents": 1999i64,
                "startedAt": mongodb::bson::DateTime::now(), "checkAt": mongodb::bson::DateTime::now(),
                "checks": 0,
            }}},
        )
        .await
        .unwrap();
    let gateway = payments::gateway::StripeGateway::new(&payments::gateway::StripeConfig {
        base: stripe.url.clone(),
        key: test_support::stripe::FAKE_STRIPE_KEY.to_owned(),
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    use payments::gateway::PaymentGateway as _;
    let charge_id = gateway
        .charge(payments::gateway::Charge {
            amount_cents: 1999,
            currency: "usd",
            token: "tok_visa".to_owned(),
            order_id: order_id.clone(),
            idempotency_key: format!("order-{order_id}-attempt-1"),
        })
        .await
        .unwrap();

    attempt_reaches(&app, &order_id, "succeeded").await;
    let created = eventually("payment:created", WAIT, || async {
        let events = events_about(&app, "payment:created", &order_id).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(created[0]["id"], payment_id.to_hex().as_str());
    assert_eq!(created[0]["stripeId"], charge_id.as_str());
    assert_eq!(stripe.charges_for(&order_id).len(), 1);
}

#[tokio::test]
async fn a_second_charge_hidden_from_search_is_found_later_and_refunded() {
    let (app, stripe) = spawn_with_stripe().await;
    let buyer = fake_user();
    let order_id = order_for(&app, &buyer).await;
    // Stripe's search lags longer than configured (1 s): the first charge is declared failed
    // while it stands, and the buyer pays again.
    stripe.set(|s| {
        s.fail_after_charge = 1;
        s.search_delay = Duration::from_secs(12);
    });
    pay(&app, &buyer, &order_id, "tok_visa").await.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service temporarily unavailable",
    );
    eventually("the attempt failed", Duration::from_secs(20), || async {
        (attempt_state(&app, &order_id).await == "failed").then_some(())
    })
    .await;
    let paid = pay(&app, &buyer, &order_id, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    assert_eq!(
        standing(&stripe, &order_id),
        2,
        "the situation the audit is for"
    );

    eventually(
        "the first charge refunded",
        Duration::from_secs(30),
        || async { (stripe.refunds().len() == 1).then_some(()) },
    )
    .await;
    let charges = stripe.charges_for(&order_id);
    assert_eq!(stripe.refunds()[0].charge, charges[0].id);
    assert_eq!(standing(&stripe, &order_id), 1);
    assert!(charges[1].standing(), "the recorded charge is the one kept");
}

#[tokio::test]
async fn fifty_orders_paid_at_once_with_fifty_racing_double_pays_charge_exactly_fifty() {
    let (app, stripe) = spawn_with_stripe().await;
    let buyer = fake_user();
    let orders = join_all((0..50).map(|_| order_for(&app, &buyer))).await;
    let payments = orders.iter().flat_map(|order_id| {
        ["tok_visa", "tok_mastercard"].map(|token| pay(&app, &buyer, order_id, token))
    });
    let answers = join_all(payments).await;
    for pair in answers.chunks(2) {
        let refused = assert_one_created(pair);
        assert_eq!(
            refused[0].status,
            StatusCode::BAD_REQUEST,
            "{}",
            refused[0].body
        );
    }
    let charges = stripe.charges();
    assert_eq!(charges.len(), 50);
    assert!(charges.iter().all(|c| c.standing()));
    for order_id in &orders {
        assert_eq!(stripe.charges_for(order_id).len(), 1);
    }
    assert!(stripe.refunds().is_empty());
}
