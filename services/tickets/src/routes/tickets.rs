//! `/api/tickets/*`: create, list (available only, paged), show, update (owner only).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use common::mongo::RecordId;
use common::{ApiError, CurrentUser, Result, ValidatedJson};
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::domain;
use crate::state::AppState;
use crate::store::TicketDoc;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tickets", get(list_tickets).post(create_ticket))
        .route("/api/tickets/{id}", get(show_ticket).put(update_ticket))
}

#[derive(Debug, Deserialize, Validate)]
struct TicketBody {
    #[validate(custom(function = "domain::title", message = "Title is required"))]
    title: String,
    #[validate(custom(function = "domain::price", message = "Price must be greater than 0"))]
    price: f64,
}

/// Ticket JSON: `{id, title, price, userId, version, orderId?}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketJson {
    id: String,
    title: String,
    price: f64,
    user_id: String,
    version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
}

impl From<TicketDoc> for TicketJson {
    fn from(ticket: TicketDoc) -> Self {
        Self {
            id: ticket.id.to_hex(),
            title: ticket.title,
            price: ticket.price,
            user_id: ticket.user_id,
            version: ticket.version,
            order_id: ticket.order_id,
        }
    }
}

async fn create_ticket(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    ValidatedJson(body): ValidatedJson<TicketBody>,
) -> Result<(StatusCode, Json<TicketJson>)> {
    let ticket = state
        .tickets
        .create(body.title.trim().to_owned(), body.price, user.id)
        .await?;
    Ok((StatusCode::CREATED, Json(ticket.into())))
}

async fn list_tickets(
    State(state): State<AppState>,
    query: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(HeaderMap, Json<Vec<TicketJson>>)> {
    let Query(query) = query.map_err(|_| ApiError::bad_request("Malformed query string"))?;
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let after = match query.get("after") {
        None => None,
        Some(raw) => Some(
            ObjectId::parse_str(raw)
                .map_err(|_| ApiError::field("after", "after is not a valid cursor"))?,
        ),
    };
    let page = state.tickets.list_available(limit, after).await?;
    let mut headers = HeaderMap::new();
    if let Some(last) = page.tickets.last().filter(|_| page.has_more) {
        let link = format!(
            "</api/tickets?limit={limit}&after={}>; rel=\"next\"",
            last.id.to_hex()
        );
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((
        headers,
        Json(page.tickets.into_iter().map(TicketJson::from).collect()),
    ))
}

async fn show_ticket(
    State(state): State<AppState>,
    RecordId(id): RecordId,
) -> Result<Json<TicketJson>> {
    let ticket = state.tickets.find(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(ticket.into()))
}

async fn update_ticket(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    // Held back until the body is validated: a bad body is reported before a missing record.
    id: Result<RecordId, ApiError>,
    ValidatedJson(body): ValidatedJson<TicketBody>,
) -> Result<Json<TicketJson>> {
    let RecordId(id) = id?;
    let ticket = state
        .tickets
        .update(id, &user.id, body.title.trim().to_owned(), body.price)
        .await?;
    Ok(Json(ticket.into()))
}
