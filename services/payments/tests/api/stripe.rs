//! The Stripe adapter against the fake Stripe of `test-support`: what it sends, and how it
//! reads each answer.

use payments::gateway::{Charge, GatewayError, PaymentGateway, StripeConfig, StripeGateway};
use std::time::Duration;
use test_support::FakeStripe;
use test_support::stripe::FAKE_STRIPE_KEY;

fn gateway(base: &str, key: &str) -> StripeGateway {
    StripeGateway::new(&StripeConfig {
        base: base.to_owned(),
        key: key.to_owned(),
        timeout: Duration::from_secs(2),
    })
    .unwrap()
}

fn charge(token: &str, order: &str, attempt: u32) -> Charge {
    Charge {
        amount_cents: 1999,
        currency: "usd",
        token: token.to_owned(),
        order_id: order.to_owned(),
        idempotency_key: format!("order-{order}-attempt-{attempt}"),
    }
}

#[tokio::test]
async fn a_charge_sends_cents_the_token_the_order_and_the_attempts_key_once() {
    let stripe = FakeStripe::start().await;
    let gateway = gateway(&stripe.url, FAKE_STRIPE_KEY);
    let id = gateway.charge(charge("tok_visa", "o1", 1)).await.unwrap();
    // The same attempt again (a retried request) is the same charge.
    let again = gateway.charge(charge("tok_other", "o1", 1)).await.unwrap();
    assert_eq!(again, id);
    let charges = stripe.charges();
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0].id, id);
    assert_eq!(charges[0].amount, 1999);
    assert_eq!(charges[0].source, "tok_visa");
    assert_eq!(charges[0].order_id, "o1");
    assert_eq!(
        charges[0].idempotency_key.as_deref(),
        Some("order-o1-attempt-1")
    );
}

#[tokio::test]
async fn a_decline_carries_stripes_message_and_charges_nothing() {
    let stripe = FakeStripe::start().await;
    let gateway = gateway(&stripe.url, FAKE_STRIPE_KEY);
    match gateway.charge(charge("tok_chargeDeclined", "o1", 1)).await {
        Err(GatewayError::Declined(message)) => assert_eq!(message, "Your card was declined."),
        other => panic!("expected a decline, got {other:?}"),
    }
    assert!(stripe.charges().iter().all(|c| !c.standing()));
}

#[tokio::test]
async fn a_5xx_after_charging_a_timeout_a_wrong_key_or_no_stripe_is_unavailable() {
    let stripe = FakeStripe::start().await;
    stripe.set(|s| s.fail_after_charge = 1);
    let ours = gateway(&stripe.url, FAKE_STRIPE_KEY);
    assert!(matches!(
        ours.charge(charge("tok_visa", "o1", 1)).await,
        Err(GatewayError::Unavailable(_))
    ));
    // It did charge: that is what reconciliation is for.
    assert!(stripe.charges_for("o1")[0].standing());

    let wrong_key = gateway(&stripe.url, "pk_not_a_secret");
    assert!(matches!(
        wrong_key.charge(charge("tok_visa", "o2", 1)).await,
        Err(GatewayError::Unavailable(_))
    ));
    let gone = gateway("http://127.0.0.1:1", FAKE_STRIPE_KEY);
    assert!(matches!(
        gone.charge(charge("tok_visa", "o3", 1)).await,
        Err(GatewayError::Unavailable(_))
    ));
    stripe.set(|s| s.hang = true);
    assert!(matches!(
        ours.charge(charge("tok_visa", "o4", 1)).await,
        Err(GatewayError::Unavailable(_))
    ));
}

#[tokio::test]
async fn search_finds_an_orders_charges_and_a_refund_happens_once() {
    let stripe = FakeStripe::start().await;
    let gateway = gateway(&stripe.url, FAKE_STRIPE_KEY);
    let first = gateway.charge(charge("tok_visa", "o1", 1)).await.unwrap();
    gateway.charge(charge("tok_visa", "o2", 1)).await.unwrap();
    let second = gateway.charge(charge("tok_visa", "o1", 2)).await.unwrap();

    let found = gateway.charges_for("o1".to_owned()).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert!(found.iter().all(|c| c.succeeded && !c.refunded));

    let refund = gateway
        .refund(second.clone(), "o1".to_owned())
        .await
        .unwrap();
    assert!(refund.is_some());
    // Asked again (a worker that crashed after the refund): the same refund, no second one.
    assert_eq!(
        gateway
            .refund(second.clone(), "o1".to_owned())
            .await
            .unwrap(),
        refund
    );
    assert_eq!(stripe.refunds().len(), 1);
    let found = gateway.charges_for("o1".to_owned()).await.unwrap();
    assert!(found.iter().any(|c| c.id == second && c.refunded));

    stripe.set(|s| s.unavailable = true);
    assert!(matches!(
        gateway.charges_for("o1".to_owned()).await,
        Err(GatewayError::Unavailable(_))
    ));
    assert!(matches!(
        gateway.refund(first.clone(), "o1".to_owned()).await,
        Err(GatewayError::Unavailable(_))
    ));
}
