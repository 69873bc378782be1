//! The Stripe adapter against a local HTTP server that checks what it receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use payments::gateway::{Charge, GatewayError, PaymentGateway, StripeGateway};
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(HeaderMap, HashMap<String, String>)>>>;

async fn charges(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, axum::Json<Value>) {
    let source = form.get("source").cloned().unwrap_or_default();
    seen.lock().unwrap().push((headers, form));
    // Stripe's own answers when the key is wrong or the account is rate limited.
    let ours = match source.as_str() {
        "tok_wrongKey" => Some(StatusCode::UNAUTHORIZED),
        "tok_rateLimited" => Some(StatusCode::TOO_MANY_REQUESTS),
        _ => None,
    };
    if let Some(status) = ours {
        return (
            status,
            axum::Json(json!({"error": {"message": "Not your fault", "type": "api_error"}})),
        );
    }
    if source == "tok_chargeDeclined" {
        (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(
                json!({"error": {"message": "Your card was declined.", "code": "card_declined"}}),
            ),
        )
    } else {
        (
            StatusCode::OK,
            axum::Json(json!({"id": "ch_test_123", "object": "charge"})),
        )
    }
}

async fn fake_stripe() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/charges", post(charges))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, seen)
}

fn charge(token: &str) -> Charge {
    Charge {
        amount_cents: 1999,
        currency: "usd",
        token: token.to_owned(),
        idempotency_key: "order-abc".to_owned(),
    }
}

#[tokio::test]
async fn the_adapter_sends_cents_the_token_the_key_and_an_idempotency_key() {
    let (address, seen) = fake_stripe().await;
    let gateway = StripeGateway::new(&address, "sk_test_secret").unwrap();
    let id = gateway.charge(charge("tok_visa")).await.unwrap();
    assert_eq!(id, "ch_test_123");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, form) = &seen[0];
    assert_eq!(headers["authorization"], "Bearer sk_test_secret");
    assert_eq!(headers["idempotency-key"], "order-abc");
    assert_eq!(form["amount"], "1999");
    assert_eq!(form["currency"], "usd");
    assert_eq!(form["source"], "tok_visa");
}

#[tokio::test]
async fn a_decline_carries_stripes_message() {
    let (address, _seen) = fake_stripe().await;
    let gateway = StripeGateway::new(&address, "sk_test_secret").unwrap();
    match gateway.charge(charge("tok_chargeDeclined")).await {
        Err(GatewayError::Declined(message)) => assert_eq!(message, "Your card was declined."),
        other => panic!("expected a decline, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_stripe_is_unavailable_not_declined() {
    let gateway = StripeGateway::new("http://127.0.0.1:1", "sk_test_secret").unwrap();
    assert!(matches!(
        gateway.charge(charge("tok_visa")).await,
        Err(GatewayError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_wrong_key_or_a_rate_limit_is_unavailable_not_a_decline() {
    let (address, _seen) = fake_stripe().await;
    let gateway = StripeGateway::new(&address, "sk_test_secret").unwrap();
    for token in ["tok_wrongKey", "tok_rateLimited"] {
        match gateway.charge(charge(token)).await {
            Err(GatewayError::Unavailable(_)) => {}
            other => panic!("{token}: expected unavailable, got {other:?}"),
        }
    }
}
