//! `POST /api/payments`: pay for one's own order with a card token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::error::ErrorBody;
use common::events::OrderStatus;
use common::openapi::{RateLimited, TooLarge};
use common::{ApiError, CurrentUser, Result, ValidatedJson};
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use crate::gateway::{Charge, GatewayError};
use crate::state::AppState;
use crate::store::Claim;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/payments", post(create_payment))
}

/// What a buyer gives to pay for an order.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = PaymentInput,
    example = json!({"token": "tok_visa", "orderId": "64b7f0c2a1e4d93f2c8b4501"})
)]
struct PaymentBody {
    /// The card token from Stripe.js; with the local test gateway `tok_visa` succeeds and
    /// `tok_chargeDeclined` is declined.
    #[validate(length(min = 1, max = 200, message = "Token must be provided"))]
    #[schema(min_length = 1, max_length = 200)]
    token: String,
    /// The order to pay (ObjectId hex), one of the caller's.
    #[schema(pattern = "^[0-9a-fA-F]{24}$")]
    #[validate(custom(function = "object_id", message = "OrderId must be provided"))]
    order_id: String,
}

/// A payment: `{id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Payment)]
struct PaymentJson {
    /// The payment's id (ObjectId hex).
    #[schema(example = "64b7f0c2a1e4d93f2c8b4599")]
    id: String,
}

fn object_id(id: &str) -> std::result::Result<(), ValidationError> {
    ObjectId::parse_str(id)
        .map(|_| ())
        .map_err(|_| ValidationError::new("object_id"))
}

/// The token as it may appear in an idempotency key (Stripe allows 255 characters; tokens are
/// at most 200 and made of letters, digits and `_`).
fn charge_token_key(token: &str) -> String {
    token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Charges the card for one of the signed-in user's orders; the order then becomes `complete`.
#[utoipa::path(
    post,
    path = "/api/payments",
    tag = "payments",
    request_body = PaymentBody,
    security(("session" = [])),
    responses(
        (status = 201, description = "Paid", body = PaymentJson),
        (status = 400, description = "Validation failed (`token` or `orderId`, named in \
            `field`); `Cannot pay for a cancelled order`, `Order already paid`, `Order has \
            expired`, `A payment for this order is in progress`; or the card was declined \
            (the gateway's reason, field `token`)", body = ErrorBody,
            example = json!({"errors": [{"message": "Your card was declined.", "field": "token"}]})),
        (status = 401, description = "`Not authorized`: not signed in, or not the order's owner",
            body = ErrorBody, example = json!({"errors": [{"message": "Not authorized"}]})),
        (status = 404, description = "`Not found`: no such order", body = ErrorBody,
            example = json!({"errors": [{"message": "Not found"}]})),
        (status = 413, response = inline(TooLarge)),
        (status = 429, response = inline(RateLimited)),
        (status = 503, description = "The database or the payment gateway is unreachable; \
            retry later", body = ErrorBody,
            example = json!({"errors": [{"message": "Service temporarily unavailable"}]})),
    )
)]
#[tracing::instrument(skip_all, fields(order_id = %body.order_id))]
async fn create_payment(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    ValidatedJson(body): ValidatedJson<PaymentBody>,
) -> Result<(StatusCode, Json<PaymentJson>)> {
    let order_id = ObjectId::parse_str(&body.order_id)
        .map_err(|_| ApiError::field("orderId", "OrderId must be provided"))?;
    let order = state
        .payments
        .order(order_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != user.id {
        return Err(ApiError::NotAuthorized);
    }
    match order.status {
        OrderStatus::Cancelled => {
            return Err(ApiError::bad_request("Cannot pay for a cancelled order"));
        }
        OrderStatus::Complete => return Err(ApiError::bad_request("Order already paid")),
        OrderStatus::Created | OrderStatus::AwaitingPayment => {}
    }
    if state.payments.is_paid(order_id).await? {
        return Err(ApiError::bad_request("Order already paid"));
    }
    // The cancellation may not have arrived yet; the clock is enough to refuse.
    if order.expires_at <= DateTime::now() {
        return Err(ApiError::bad_request("Order has expired"));
    }
    let payment_id = match state.payments.claim(order_id).await? {
        Claim::Claimed(id) => id,
        Claim::AlreadyPaid => return Err(ApiError::bad_request("Order already paid")),
        Claim::InProgress => {
            return Err(ApiError::bad_request(
                "A payment for this order is in progress",
            ));
        }
    };
    let idempotency_key = format!("order-{order_id}-{}", charge_token_key(&body.token));
    let charge = Charge {
        amount_cents: (order.price * 100.0).round() as i64,
        currency: "usd",
        token: body.token,
        // Per order *and* card: a retry of the same card never charges twice, while a new card
        // after a decline gets a fresh key (Stripe replays the stored decline for a used key).
        idempotency_key,
    };
    let stripe_id = match state.gateway.charge(charge).await {
        Ok(id) => id,
        Err(error) => {
            state.payments.release(payment_id).await?;
            return Err(match error {
                // The card is the `token` field: clients show the reason next to it.
                GatewayError::Declined(reason) => ApiError::field("token", reason),
                GatewayError::Unavailable(reason) => ApiError::Unavailable(reason),
            });
        }
    };
    state
        .payments
        .succeed(payment_id, order_id, &stripe_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PaymentJson {
            id: payment_id.to_hex(),
        }),
    ))
}
