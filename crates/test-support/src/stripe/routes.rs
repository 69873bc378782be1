//! The fake's HTTP surface: Stripe's three calls, with its answers' shapes, and the control
//! routes under `/_fake/`.

use std::collections::HashMap;

use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FakeCharge, FakeRefund, Ledger, Shared, Switches};

type Reply = (StatusCode, Json<Value>);

/// The fake's routes over `shared`.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/charges", post(charge))
        .route("/v1/refunds", post(refund))
        .route("/v1/charges/search", get(search))
        .route("/_fake/state", get(state))
        .route("/_fake/switches", post(switch))
        .with_state(shared)
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Reply {
    (
        status,
        Json(json!({"error": {"type": kind, "code": code, "message": message}})),
    )
}

/// Stripe answers 401 without a secret key.
fn authorized(headers: &HeaderMap) -> Result<(), Reply> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match key {
        Some(key) if key.starts_with("sk_") => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "api_key_invalid",
            "Invalid API Key provided",
        )),
    }
}

/// A call made with a secret key, and its `Idempotency-Key` if it has one.
struct Caller {
    key: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Reply;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Reply> {
        authorized(&parts.headers)?;
        let key = parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self { key })
    }
}

fn charge_json(charge: &FakeCharge) -> Value {
    json!({
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "currency": "usd",
        "status": charge.status,
        "paid": charge.status == "succeeded",
        "refunded": charge.refunded,
        "created": charge.created,
        "metadata": {"orderId": charge.order_id},
    })
}

fn now_seconds() -> i64 {
    mongodb::bson::DateTime::now().timestamp_millis() / 1000
}

/// Stripe having a bad day.
fn unavailable() -> Reply {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "",
        "Try again later",
    )
}

impl Ledger {
    /// The answer a write gets before it does anything: 503 while the fake is unavailable, or
    /// the first call's answer to a repeated idempotency key.
    fn answered(&self, key: Option<&String>) -> Option<Reply> {
        if self.switches.unavailable {
            return Some(unavailable());
        }
        self.replay(key)
    }

    /// A repeat of an idempotency key gets the answer the first call got.
    fn replay(&self, key: Option<&String>) -> Option<Reply> {
        let (status, body) = self.replies.get(key?)?;
        Some((
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            Json(body.clone()),
        ))
    }

    fn remember(&mut self, key: Option<String>, reply: &Reply) {
        if let Some(key) = key {
            self.replies
                .insert(key, (reply.0.as_u16(), reply.1.0.clone()));
        }
    }
}

/// What a charge call does after the charge is made (or declined).
enum Then {
    Answer(Reply),
    AnswerLate(Reply, std::time::Duration),
    Hang,
}

async fn charge(
    State(shared): State<Shared>,
    Caller { key }: Caller,
    Form(form): Form<HashMap<String, String>>,
) -> Reply {
    let then = {
        let mut ledger = shared.lock();
        if let Some(reply) = ledger.answered(key.as_ref()) {
            return reply;
        }
        let source = form.get("source").cloned().unwrap_or_default();
        let declined = source == "tok_chargeDeclined";
        let charge = FakeCharge {
            id: format!("ch_fake_{}", ledger.charges.len() + 1),
            order_id: form.get("metadata[orderId]").cloned().unwrap_or_default(),
            amount: form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0),
            source,
            status: if declined { "failed" } else { "succeeded" }.to_owned(),
            refunded: false,
            created: now_seconds(),
            idempotency_key: key.clone(),
            made: std::time::Instant::now(),
        };
        let reply = if declined {
            error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                "card_declined",
                "Your card was declined.",
            )
        } else {
            (StatusCode::OK, Json(charge_json(&charge)))
        };
        ledger.charges.push(charge);
        let switches = ledger.switches.clone();
        let reply = if declined {
            reply
        } else if switches.fail_after_charge > 0 {
            ledger.switches.fail_after_charge -= 1;
            error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "",
                "The charge went through; the answer did not",
            )
        } else {
            reply
        };
        ledger.remember(key, &reply);
        if switches.hang && !declined {
            Then::Hang
        } else if switches.latency.is_zero() {
            Then::Answer(reply)
        } else {
            Then::AnswerLate(reply, switches.latency)
        }
    };
    match then {
        Then::Answer(reply) => reply,
        Then::AnswerLate(reply, latency) => {
            tokio::time::sleep(latency).await;
            reply
        }
        Then::Hang => std::future::pending().await,
    }
}

async fn refund(
    State(shared): State<Shared>,
    Caller { key }: Caller,
    Form(form): Form<HashMap<String, String>>,
) -> Reply {
    let mut ledger = shared.lock();
    if let Some(reply) = ledger.answered(key.as_ref()) {
        return reply;
    }
    let charge_id = form.get("charge").cloned().unwrap_or_default();
    let next = ledger.refunds.len() + 1;
    let Some(charge) = ledger.charges.iter_mut().find(|c| c.id == charge_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "resource_missing",
            "No such charge",
        );
    };
    if charge.refunded {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "charge_already_refunded",
            "Charge has already been refunded.",
        );
    }
    charge.refunded = true;
    let refund = FakeRefund {
        id: format!("re_fake_{next}"),
        charge: charge_id.clone(),
        order_id: form.get("metadata[orderId]").cloned(),
    };
    let reply = (
        StatusCode::OK,
        Json(
            json!({"id": refund.id, "object": "refund", "charge": charge_id, "status": "succeeded"}),
        ),
    );
    ledger.refunds.push(refund);
    ledger.remember(key, &reply);
    reply
}

#[derive(Deserialize)]
struct SearchParams {
    query: String,
    limit: Option<usize>,
    page: Option<String>,
}

/// The order id in `metadata['orderId']:'<id>'`, the one query the fake understands.
fn order_in(query: &str) -> Option<&str> {
    query
        .strip_prefix("metadata['orderId']:'")?
        .strip_suffix('\'')
}

async fn search(
    State(shared): State<Shared>,
    _caller: Caller,
    Query(params): Query<SearchParams>,
) -> Reply {
    let ledger = shared.lock();
    if ledger.switches.unavailable {
        return unavailable();
    }
    let Some(order_id) = order_in(&params.query) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "parameter_invalid",
            "The fake understands only metadata['orderId']:'<id>'",
        );
    };
    let found: Vec<Value> = ledger
        .charges
        .iter()
        .filter(|c| c.order_id == order_id && c.made.elapsed() >= ledger.switches.search_delay)
        .map(charge_json)
        .collect();
    let limit = params.limit.unwrap_or(10).clamp(1, 100);
    let start: usize = params.page.and_then(|p| p.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = found.iter().skip(start).take(limit).cloned().collect();
    let more = start + limit < found.len();
    (
        StatusCode::OK,
        Json(json!({
            "object": "search_result",
            "data": page,
            "has_more": more,
            "next_page": more.then(|| (start + limit).to_string()),
        })),
    )
}

async fn state(State(shared): State<Shared>) -> Json<Ledger> {
    Json(shared.lock().clone())
}

async fn switch(State(shared): State<Shared>, Json(switches): Json<Switches>) -> Json<Switches> {
    shared.lock().switches = switches.clone();
    Json(switches)
}
