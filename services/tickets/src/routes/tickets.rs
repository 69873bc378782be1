//! `/api/tickets/*`: create, list (available only, paged), show, update (owner only).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use common::error::ErrorBody;
use common::openapi::{SignedOut, Unavailable, WriteFailures};
use common::{ApiError, CurrentUser, RecordId, Result, ValidatedJson};
use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::domain;
use crate::list_cache::CachedSlice;
use crate::state::AppState;
use crate::store::TicketDoc;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tickets", get(list_tickets).post(create_ticket))
        .route("/api/tickets/{id}", get(show_ticket).put(update_ticket))
}

/// What a seller gives to list or edit a ticket.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[schema(as = TicketInput, example = json!({"title": "concert", "price": 20}))]
struct TicketBody {
    /// 1 to 200 characters once trimmed; stored trimmed.
    #[validate(custom(function = "domain::title"))]
    #[schema(schema_with = title_schema)]
    title: String,
    /// Whole cents from 0.01 to 1 000 000: at most two decimals.
    #[validate(custom(function = "domain::price"))]
    #[schema(minimum = 0.01, maximum = 1_000_000, multiple_of = 0.01)]
    price: f64,
}

fn title_schema() -> utoipa::openapi::Object {
    common::openapi::trimmed_string(
        1,
        domain::MAX_TITLE,
        "1 to 200 characters once trimmed; stored trimmed.",
    )
}

/// A ticket: `{id, title, price, userId, version, orderId?}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Ticket)]
struct TicketJson {
    /// The ticket's id (ObjectId hex).
    #[schema(example = "64b7f0c2a1e4d93f2c8b4567")]
    id: String,
    #[schema(example = "concert")]
    title: String,
    #[schema(example = 20)]
    price: f64,
    /// The seller's user id.
    #[schema(example = "64b7f0c2a1e4d93f2c8b4500")]
    user_id: String,
    /// 0 when created, + 1 on every change (edits, reservations, releases).
    #[schema(example = 0)]
    version: i64,
    /// The order holding the ticket; absent when it is for sale.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "64b7f0c2a1e4d93f2c8b4501")]
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

/// Lists a ticket for sale, owned by the signed-in user.
#[utoipa::path(
    post,
    path = "/api/tickets",
    tag = "tickets",
    request_body = TicketBody,
    security(("session" = [])),
    responses(
        (status = 201, description = "The new ticket, version 0", body = TicketJson),
        (status = 400, description = "The body is not a ticket: each broken rule of `title` or \
            `price` has its message, with the field in `field`; a body that is not JSON, or \
            not an object, has no `field`", body = ErrorBody, examples(
            ("Title is required" = (value = json!({"errors": [{"message": "Title is required", "field": "title"}]}))),
            ("Title is too long" = (value = json!({"errors": [{"message": "Title must be at most 200 characters", "field": "title"}]}))),
            ("Price is not positive" = (value = json!({"errors": [{"message": "Price must be greater than 0", "field": "price"}]}))),
            ("Price is too high" = (value = json!({"errors": [{"message": "Price must be at most 1000000", "field": "price"}]}))),
            ("Price has a fraction of a cent" = (value = json!({"errors": [{"message": "Price must have at most two decimals", "field": "price"}]}))),
            ("A field is missing" = (value = json!({"errors": [{"message": "price is required", "field": "price"}]}))),
            ("Not a JSON object" = (value = json!({"errors": [{"message": "Expected a JSON object"}]}))),
        )),
        (status = 401, response = inline(SignedOut)),
        WriteFailures,
    )
)]
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

/// Tickets for sale (not reserved by an order), newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/tickets",
    tag = "tickets",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, example = 100,
            description = "Page size, 1 to 500 (default 100)"),
        ("after" = Option<String>, Query, example = "64b7f0c2a1e4d93f2c8b4567",
            pattern = "^[0-9a-fA-F]{24}$",
            description = "Cursor: continue after this ticket (take it from the `Link` \
                header of the previous page); the id of a ticket, 24 hexadecimal digits"),
    ),
    responses(
        (status = 200, description = "A page of tickets", body = Vec<TicketJson>,
            headers(("Link" = String, description = "`</api/tickets?limit=…&after=…>; \
                rel=\"next\"` when more tickets follow; absent on the last page"))),
        (status = 400, description = "`limit` is not an integer from 1 to 500, or `after` is \
            not a valid cursor (named in `field`)", body = ErrorBody, examples(
            ("Bad limit" = (value = json!({"errors": [{"message": "limit must be an integer from 1 to 500", "field": "limit"}]}))),
            ("Bad cursor" = (value = json!({"errors": [{"message": "after is not a valid cursor", "field": "after"}]}))),
        )),
        (status = 503, response = inline(Unavailable)),
    )
)]
async fn list_tickets(
    State(state): State<AppState>,
    query: std::result::Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(HeaderMap, bytes::Bytes)> {
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
    let store = &state.tickets;
    let slice = store
        .list_cache()
        .get_or_read((limit, after), async {
            let listing = store.list_available(limit, after).await?;
            let link = listing
                .tickets
                .last()
                .filter(|_| listing.has_more)
                .and_then(|last| {
                    let link = format!(
                        "</api/tickets?limit={limit}&after={}>; rel=\"next\"",
                        last.id.to_hex()
                    );
                    HeaderValue::from_str(&link).ok()
                });
            let tickets: Vec<TicketJson> =
                listing.tickets.into_iter().map(TicketJson::from).collect();
            let body = serde_json::to_vec(&tickets)
                .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("serialize list")))?;
            Ok::<_, ApiError>(CachedSlice {
                body: body.into(),
                link,
            })
        })
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(link) = slice.link {
        headers.insert(header::LINK, link);
    }
    Ok((headers, slice.body))
}

/// One ticket, reserved or not.
#[utoipa::path(
    get,
    path = "/api/tickets/{id}",
    tag = "tickets",
    params(("id" = String, Path, description = "The ticket's id", example = "64b7f0c2a1e4d93f2c8b4567",
        pattern = "^[0-9a-fA-F]{24}$")),
    responses(
        (status = 200, description = "The ticket", body = TicketJson),
        (status = 404, description = "`Not found`: no such ticket (also for a malformed id)",
            body = ErrorBody, example = json!({"errors": [{"message": "Not found"}]})),
        (status = 503, response = inline(Unavailable)),
    )
)]
async fn show_ticket(
    State(state): State<AppState>,
    RecordId(id): RecordId,
) -> Result<Json<TicketJson>> {
    let ticket = state.tickets.find(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(ticket.into()))
}

/// Changes the title and price of one's own ticket; its version goes up by one.
#[utoipa::path(
    put,
    path = "/api/tickets/{id}",
    tag = "tickets",
    params(("id" = String, Path, description = "The ticket's id", example = "64b7f0c2a1e4d93f2c8b4567",
        pattern = "^[0-9a-fA-F]{24}$")),
    request_body = TicketBody,
    security(("session" = [])),
    responses(
        (status = 200, description = "The updated ticket, version + 1", body = TicketJson),
        (status = 400, description = "The body is not a ticket (each broken rule of `title` \
            or `price` has its message, with the field in `field`, as for creating one), or \
            `Cannot edit a reserved ticket`: an order holds it", body = ErrorBody, examples(
            ("Reserved" = (value = json!({"errors": [{"message": "Cannot edit a reserved ticket"}]}))),
            ("Title is required" = (value = json!({"errors": [{"message": "Title is required", "field": "title"}]}))),
            ("Price has a fraction of a cent" = (value = json!({"errors": [{"message": "Price must have at most two decimals", "field": "price"}]}))),
        )),
        (status = 401, description = "`Not authorized`: not signed in, or not the ticket's owner",
            body = ErrorBody, examples(
            ("Signed out" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
            ("Not the owner" = (value = json!({"errors": [{"message": "Not authorized"}]}))),
        )),
        (status = 404, description = "`Not found`: no such ticket (also for a malformed id)",
            body = ErrorBody, example = json!({"errors": [{"message": "Not found"}]})),
        WriteFailures,
    )
)]
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
