//! The payment saga across the whole stack, against the fake Stripe: a charge slower than the
//! order's hold ends complete or refunded (never charged and cancelled), many payments at once
//! charge each order exactly once, and a stack without a gateway configured does not start.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use test_support::{FakeStripe, TestApp, TestUser, WAIT, eventually};
use ticketing::up::ServiceName;

/// The stack on a fake Stripe, with the given extra variables.
async fn stack_with_stripe(extra: &[(&str, &str)]) -> (TestApp, FakeStripe) {
    let stripe = FakeStripe::start().await;
    let vars: Vec<(&str, String)> = stripe
        .env()
        .into_iter()
        .chain(
            [
                ("PAYMENTS_GATEWAY", "stripe"),
                ("STRIPE_TIMEOUT_SECONDS", "15"),
                ("STRIPE_SEARCH_LAG_SECONDS", "1"),
                ("PAYMENTS_SWEEP_SECONDS", "0.2"),
            ]
            .map(|(k, v)| (k, v.to_owned())),
        )
        .chain(extra.iter().map(|(k, v)| (*k, (*v).to_owned())))
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (crate::spawn_stack_with(&vars).await, stripe)
}

/// Pays once payments knows the order (its replica may lag the order's creation).
async fn pay(
    app: &TestApp,
    buyer: &TestUser,
    order_id: &str,
    token: &str,
) -> test_support::TestResponse {
    eventually("payments to know the order", WAIT, || async {
        let response = app
            .post(
                "/api/payments",
                Some(&buyer.cookie),
                json!({"token": token, "orderId": order_id}),
            )
            .await;
        (response.status != StatusCode::NOT_FOUND).then_some(response)
    })
    .await
}

#[tokio::test]
async fn a_charge_slower_than_the_hold_ends_refunded_and_never_charged_and_cancelled() {
    let (app, stripe) = stack_with_stripe(&[("ORDER_EXPIRATION_SECONDS", "5")]).await;
    let (_, buyer, ticket) = crate::seller_buyer_and_ticket(&app).await;
    let order_id = app.order_ticket(&buyer, &ticket).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    stripe.set(|s| s.latency = Duration::from_secs(8));
    let started = Instant::now();
    let answer = pay(&app, &buyer, &order_id, "tok_visa").await;
    let answered = started.elapsed();

    // Ends complete with the ticket, or cancelled with the charge refunded: wait for either.
    let end = eventually("the order to settle", Duration::from_secs(30), || async {
        let body = app
            .get(&format!("/api/orders/{order_id}"), Some(&buyer.cookie))
            .await
            .body;
        let settled = body["status"] == "complete"
            || (body["status"] == "cancelled" && body["payment"]["status"] == "refunded");
        settled.then_some(body)
    })
    .await;
    let settled = started.elapsed();
    let charges = stripe.charges_for(&order_id);
    assert_eq!(charges.len(), 1, "{charges:?}");
    if end["status"] == "complete" {
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        assert!(charges[0].standing());
        assert!(stripe.refunds().is_empty());
    } else {
        answer.assert_error(
            StatusCode::BAD_REQUEST,
            "The order was cancelled while it was being paid; the charge will be refunded",
        );
        let refunds = stripe.refunds();
        assert_eq!(refunds.len(), 1, "{refunds:?}");
        assert_eq!(refunds[0].charge, charges[0].id);
        assert_eq!(end["payment"]["stripeId"], charges[0].id.as_str());
        app.ticket_where(&ticket, "the ticket back on sale", |t| {
            t.get("orderId").is_none()
        })
        .await;
    }
    eprintln!(
        "saga/slow charge: hold 5 s, charge 8 s: answered {:.1} s ({}), order {} {} at {:.1} s",
        answered.as_secs_f64(),
        answer.status,
        end["status"],
        end["payment"]["status"],
        settled.as_secs_f64()
    );
}

#[tokio::test]
async fn fifty_payments_and_fifty_double_pays_at_once_charge_fifty_and_complete_every_order() {
    let (app, stripe) = stack_with_stripe(&[]).await;
    let seller = app.signup("seller@test.dev", "password").await;
    // Ten open orders each (the default limit per buyer).
    let mut buyers = Vec::new();
    for n in 0..5 {
        buyers.push(app.signup(&format!("buyer{n}@test.dev"), "password").await);
    }
    let titles: Vec<String> = (0..50).map(|n| format!("seat {n}")).collect();
    let tickets = join_all(
        titles
            .iter()
            .map(|title| app.create_ticket(&seller, title, 20.0)),
    )
    .await;
    let app = &app;
    let orders = join_all(tickets.iter().enumerate().map(|(n, ticket)| {
        let buyer = &buyers[n % buyers.len()];
        async move {
            let order = app
                .order_ticket(buyer, ticket["id"].as_str().unwrap())
                .await;
            (buyer, order["id"].as_str().unwrap().to_owned())
        }
    }))
    .await;
    let started = Instant::now();
    let answers = join_all(orders.iter().flat_map(|(buyer, order_id)| {
        ["tok_visa", "tok_mastercard"].map(|token| pay(app, buyer, order_id, token))
    }))
    .await;
    let paid_in = started.elapsed();
    for pair in answers.chunks(2) {
        test_support::assert_one_created(pair);
    }
    for (buyer, order_id) in &orders {
        eventually(&format!("order {order_id} complete"), WAIT, || async {
            let body = app
                .get(&format!("/api/orders/{order_id}"), Some(&buyer.cookie))
                .await
                .body;
            (body["status"] == "complete" && body["payment"]["status"] == "paid").then_some(())
        })
        .await;
    }
    let charges = stripe.charges();
    assert_eq!(charges.len(), 50);
    assert!(charges.iter().all(|c| c.standing()));
    assert!(stripe.refunds().is_empty());
    eprintln!(
        "saga/50+50: 100 payments for 50 orders answered in {:.2} s; 50 charges, 0 refunds",
        paid_in.as_secs_f64()
    );
}

#[tokio::test]
async fn payments_does_not_start_without_a_gateway_said_naming_both_ways() {
    let context = test_support::TestContext::new();
    let refused = ticketing::up::services_named(&[ServiceName::Payments], |name| {
        context.env(name).with("PAYMENTS_GATEWAY", "")
    })
    .await;
    let error = format!(
        "{:#}",
        refused.expect_err("payments started without a gateway")
    );
    assert!(error.contains("STRIPE_KEY"), "{error}");
    assert!(error.contains("PAYMENTS_GATEWAY=local"), "{error}");
}
