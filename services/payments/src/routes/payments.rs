//! `POST /api/payments`: pay for one's own order with a card token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::error::ErrorBody;
use common::openapi::{RateLimited, TooLarge};
use common::{ApiError, CurrentUser, Result, ValidatedJson};
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use crate::saga::PayError;
use crate::state::AppState;

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
    /// The card token from Stripe.js; with the local test gateway (`PAYMENTS_GATEWAY=local`)
    /// `tok_visa` succeeds and `tok_chargeDeclined` is declined.
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
            expired`, `A payment for this order is in progress` (an earlier attempt's outcome \
            is being checked with the gateway), `The order was cancelled while it was being \
            paid; the charge will be refunded`; or the card was declined (the gateway's \
            reason, field `token`)", body = ErrorBody, examples(
            ("Declined" = (value = json!({"errors": [{"message": "Your card was declined.", "field": "token"}]}))),
            ("Already paid" = (value = json!({"errors": [{"message": "Order already paid"}]}))),
            ("Cancelled" = (value = json!({"errors": [{"message": "Cannot pay for a cancelled order"}]}))),
            ("Expired" = (value = json!({"errors": [{"message": "Order has expired"}]}))),
            ("In progress" = (value = json!({"errors": [{"message": "A payment for this order is in progress"}]}))),
            ("Cancelled while paying" = (value = json!({"errors": [{"message": "The order was cancelled while it was being paid; the charge will be refunded"}]}))),
            ("No token" = (value = json!({"errors": [{"message": "Token must be provided", "field": "token"}]}))),
            ("No order id" = (value = json!({"errors": [{"message": "OrderId must be provided", "field": "orderId"}]}))),
        )),
        (status = 401, description = "`Not authorized`: not signed in, or not the order's owner",
            body = ErrorBody, examples(
            ("Signed out" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
            ("Not the owner" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
        )),
        (status = 404, description = "`Not found`: no such order (an order made moments ago \
            is waited for, up to 2 s, while it reaches payments)", body = ErrorBody,
            example = json!({"errors": [{"message": "Not found"}]})),
        (status = 413, response = inline(TooLarge)),
        (status = 429, response = inline(RateLimited)),
        (status = 503, description = "The database or the payment gateway is unreachable. \
            If the card may have been charged, the payment's outcome is checked with the \
            gateway: meanwhile a new attempt answers 400 `A payment for this order is in \
            progress`, and the order then becomes `complete` or payable again", body = ErrorBody,
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
    let id = state
        .saga
        .pay(&user.id, order_id, body.token)
        .await
        .map_err(refused)?;
    Ok((StatusCode::CREATED, Json(PaymentJson { id: id.to_hex() })))
}

/// The answer to a payment that did not complete.
fn refused(error: PayError) -> ApiError {
    match error {
        PayError::NotFound => ApiError::NotFound,
        PayError::NotOwner => ApiError::NotAuthorized,
        PayError::Cancelled => ApiError::bad_request("Cannot pay for a cancelled order"),
        PayError::AlreadyPaid => ApiError::bad_request("Order already paid"),
        PayError::Expired => ApiError::bad_request("Order has expired"),
        PayError::InProgress => ApiError::bad_request("A payment for this order is in progress"),
        PayError::CancelledWhilePaying => ApiError::bad_request(
            "The order was cancelled while it was being paid; the charge will be refunded",
        ),
        // The card is the `token` field: clients show the reason next to it.
        PayError::Declined(reason) => ApiError::field("token", reason),
        PayError::Gateway(reason) => ApiError::Unavailable(reason),
        PayError::Store(error) => error.into(),
    }
}
