//! `/api/orders/*`: create, list (own), show (owner), cancel (owner), and the read-only view
//! of the ticket replica.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::RecordId;
use common::error::ErrorBody;
use common::events::OrderStatus;
use common::openapi::{RateLimited, SignedOut, Unavailable, WriteFailures};
use common::{ApiError, CurrentUser, Result, ValidatedJson};
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use crate::state::AppState;
use crate::store::{OrderPayment, OrderView, TicketReplica, iso};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orders", get(list_orders).post(create_order))
        .route("/api/orders/{id}", get(show_order).delete(cancel_order))
        .route("/api/orders/tickets/{id}", get(show_replicated_ticket))
}

/// What a buyer gives to order a ticket.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OrderInput, example = json!({"ticketId": "64b7f0c2a1e4d93f2c8b4567"}))]
struct OrderBody {
    /// The ticket to buy (ObjectId hex).
    #[schema(pattern = "^[0-9a-fA-F]{24}$")]
    #[validate(custom(function = "object_id", message = "TicketId must be provided"))]
    ticket_id: String,
}

fn object_id(id: &str) -> std::result::Result<(), ValidationError> {
    ObjectId::parse_str(id)
        .map(|_| ())
        .map_err(|_| ValidationError::new("object_id"))
}

/// A ticket as the orders service knows it (its replica, built from ticket events):
/// `{id, title, price, version}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OrderTicket)]
struct TicketJson {
    /// The ticket's id (ObjectId hex).
    #[schema(example = "64b7f0c2a1e4d93f2c8b4567")]
    id: String,
    #[schema(example = "concert")]
    title: String,
    #[schema(example = 20)]
    price: f64,
    /// The last version of the ticket this replica applied.
    #[schema(example = 0)]
    version: i64,
}

impl From<TicketReplica> for TicketJson {
    fn from(ticket: TicketReplica) -> Self {
        Self {
            id: ticket.id.to_hex(),
            title: ticket.title,
            price: ticket.price,
            version: ticket.version,
        }
    }
}

/// An order: `{id, userId, status, expiresAt, version, ticket, payment?}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Order)]
struct OrderJson {
    /// The order's id (ObjectId hex).
    #[schema(example = "64b7f0c2a1e4d93f2c8b4501")]
    id: String,
    /// The buyer's user id.
    #[schema(example = "64b7f0c2a1e4d93f2c8b4500")]
    user_id: String,
    #[schema(value_type = OrderStatus, example = "created")]
    status: &'static str,
    /// Until when the order holds its ticket (RFC 3339, UTC); unpaid, it is cancelled then.
    #[schema(format = DateTime, example = "2024-01-01T12:15:00Z")]
    expires_at: String,
    /// 0 when placed, + 1 on every change.
    #[schema(example = 0)]
    version: i64,
    /// The ticket ordered; `null` only if its replica is gone.
    #[schema(required = true)]
    ticket: Option<TicketJson>,
    /// The order's payment, once there is one: `paid` on a `complete` order; on a `cancelled`
    /// one, a charge that landed after the cancellation, `refunding` then `refunded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment: Option<PaymentJson>,
}

/// An order's payment: `{id, stripeId, status}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OrderPayment)]
struct PaymentJson {
    /// The payment's id (ObjectId hex).
    #[schema(example = "64b7f0c2a1e4d93f2c8b4599")]
    id: String,
    /// The gateway's charge id.
    #[schema(example = "ch_3OqZ2b2eZvKYlo2C0x1y2z3w")]
    stripe_id: String,
    /// `paid`, `refunding` or `refunded`.
    #[schema(example = "paid", pattern = "^(paid|refunding|refunded)$")]
    status: &'static str,
}

impl From<OrderView> for OrderJson {
    fn from(view: OrderView) -> Self {
        let order = view.order;
        Self {
            id: order.id.to_hex(),
            user_id: order.user_id,
            status: order.status.as_str(),
            expires_at: iso(order.expires_at),
            version: order.version,
            ticket: view.ticket.map(TicketJson::from),
            payment: order.payment.map(PaymentJson::from),
        }
    }
}

impl From<OrderPayment> for PaymentJson {
    fn from(payment: OrderPayment) -> Self {
        let status = payment.status.as_str();
        Self {
            status,
            id: payment.id,
            stripe_id: payment.stripe_id,
        }
    }
}

/// Orders a ticket: it is held for the buyer until the order is paid, cancelled or expires.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    request_body = OrderBody,
    security(("session" = [])),
    responses(
        (status = 201, description = "The order, `created`, with `expiresAt` = now + the hold \
            window (15 minutes by default)", body = OrderJson),
        (status = 400, description = "`TicketId must be provided` (field `ticketId`), \
            `Ticket is already reserved`, or `Too many open orders` (the user already has \
            `MAX_OPEN_ORDERS_PER_USER` orders created or awaiting payment)", body = ErrorBody,
            examples(
            ("Reserved" = (value = json!({"errors": [{"message": "Ticket is already reserved"}]}))),
            ("Too many open orders" = (value = json!({"errors": [{"message": "Too many open orders"}]}))),
            ("No ticket id" = (value = json!({"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]}))),
        )),
        (status = 401, response = inline(SignedOut)),
        (status = 404, description = "`Not found`: no such ticket (or not replicated to orders \
            yet: a ticket is orderable once `GET /api/orders/tickets/{id}` shows it)", body = ErrorBody,
            example = json!({"errors": [{"message": "Not found"}]})),
        WriteFailures,
    )
)]
async fn create_order(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    ValidatedJson(body): ValidatedJson<OrderBody>,
) -> Result<(StatusCode, Json<OrderJson>)> {
    let ticket_id = ObjectId::parse_str(&body.ticket_id)
        .map_err(|_| ApiError::field("ticketId", "TicketId must be provided"))?;
    let view = state.orders.create(user.id, ticket_id).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// The signed-in user's orders, newest first, each with its ticket.
#[utoipa::path(
    get,
    path = "/api/orders",
    tag = "orders",
    security(("session" = [])),
    responses(
        (status = 200, description = "The caller's orders", body = Vec<OrderJson>),
        (status = 401, response = inline(SignedOut)),
        (status = 503, response = inline(Unavailable)),
    )
)]
async fn list_orders(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<OrderJson>>> {
    let orders = state.orders.list(&user.id).await?;
    Ok(Json(orders.into_iter().map(OrderJson::from).collect()))
}

/// One of the signed-in user's orders, with its ticket.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "The order's id", example = "64b7f0c2a1e4d93f2c8b4501",
        pattern = "^[0-9a-fA-F]{24}$")),
    security(("session" = [])),
    responses(
        (status = 200, description = "The order", body = OrderJson),
        (status = 401, description = "`Not authorized`: not signed in, or not the order's owner",
            body = ErrorBody, examples(
            ("Signed out" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
            ("Not the owner" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
        )),
        (status = 404, description = "`Not found`: no such order (also for a malformed id)",
            body = ErrorBody, example = json!({"errors": [{"message": "Not found"}]})),
        (status = 503, response = inline(Unavailable)),
    )
)]
async fn show_order(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    RecordId(id): RecordId,
) -> Result<Json<OrderJson>> {
    let view = state.orders.show(id, &user.id).await?;
    Ok(Json(view.into()))
}

/// Cancels one of the signed-in user's orders, freeing its ticket. Cancelling a cancelled
/// order again changes nothing and answers 204 again.
#[utoipa::path(
    delete,
    path = "/api/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "The order's id", example = "64b7f0c2a1e4d93f2c8b4501",
        pattern = "^[0-9a-fA-F]{24}$")),
    security(("session" = [])),
    responses(
        (status = 204, description = "The order is `cancelled`"),
        (status = 400, description = "`Cannot cancel a paid order`", body = ErrorBody,
            example = json!({"errors": [{"message": "Cannot cancel a paid order"}]})),
        (status = 401, description = "`Not authorized`: not signed in, or not the order's owner",
            body = ErrorBody, examples(
            ("Signed out" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
            ("Not the owner" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
        )),
        (status = 404, description = "`Not found`: no such order (also for a malformed id)",
            body = ErrorBody, example = json!({"errors": [{"message": "Not found"}]})),
        (status = 429, response = inline(RateLimited)),
        (status = 503, response = inline(Unavailable)),
    )
)]
async fn cancel_order(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    RecordId(id): RecordId,
) -> Result<StatusCode> {
    state.orders.cancel(id, Some(&user.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The replica as orders sees it: lets tools (the concurrency test) check that replication
/// converged without creating orders.
#[utoipa::path(
    get,
    path = "/api/orders/tickets/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "The ticket's id", example = "64b7f0c2a1e4d93f2c8b4567",
        pattern = "^[0-9a-fA-F]{24}$")),
    responses(
        (status = 200, description = "The orders service's replica of the ticket", body = TicketJson),
        (status = 404, description = "`Not found`: not (yet) replicated, or a malformed id",
            body = ErrorBody, example = json!({"errors": [{"message": "Not found"}]})),
        (status = 503, response = inline(Unavailable)),
    )
)]
async fn show_replicated_ticket(
    State(state): State<AppState>,
    RecordId(id): RecordId,
) -> Result<Json<TicketJson>> {
    let ticket = state.orders.ticket(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(ticket.into()))
}
