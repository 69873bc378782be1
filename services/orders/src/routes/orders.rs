//! `/api/orders/*`: create, list (own), show (owner), cancel (owner), and the read-only view
//! of the ticket replica.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::mongo::RecordId;
use common::{ApiError, CurrentUser, Result, ValidatedJson};
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use crate::state::AppState;
use crate::store::{OrderView, TicketReplica, iso};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orders", get(list_orders).post(create_order))
        .route("/api/orders/{id}", get(show_order).delete(cancel_order))
        .route("/api/orders/tickets/{id}", get(show_replicated_ticket))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct OrderBody {
    #[validate(custom(function = "object_id", message = "TicketId must be provided"))]
    ticket_id: String,
}

fn object_id(id: &str) -> std::result::Result<(), ValidationError> {
    ObjectId::parse_str(id)
        .map(|_| ())
        .map_err(|_| ValidationError::new("object_id"))
}

/// The ticket inside an order: `{id, title, price, version}`.
#[derive(Debug, Serialize)]
struct TicketJson {
    id: String,
    title: String,
    price: f64,
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

/// Order JSON: `{id, userId, status, expiresAt, version, ticket}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderJson {
    id: String,
    user_id: String,
    status: &'static str,
    expires_at: String,
    version: i64,
    ticket: Option<TicketJson>,
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
        }
    }
}

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

async fn list_orders(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<OrderJson>>> {
    let orders = state.orders.list(&user.id).await?;
    Ok(Json(orders.into_iter().map(OrderJson::from).collect()))
}

async fn show_order(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    RecordId(id): RecordId,
) -> Result<Json<OrderJson>> {
    let view = state.orders.show(id, &user.id).await?;
    Ok(Json(view.into()))
}

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
async fn show_replicated_ticket(
    State(state): State<AppState>,
    RecordId(id): RecordId,
) -> Result<Json<TicketJson>> {
    let ticket = state.orders.ticket(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(ticket.into()))
}
