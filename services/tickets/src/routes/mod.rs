//! HTTP routes of the tickets service, and its OpenAPI document.

mod tickets;

use axum::routing::get;
use axum::{Json, Router};
use common::openapi::Shared;
use utoipa::OpenApi as _;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    tickets::router().route("/api/tickets/openapi.json", get(openapi_json))
}

/// The document of every route above, from the handlers' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ticketing: tickets",
        description = "Tickets for sale: sellers list and edit them; orders reserve and release them."
    ),
    paths(
        tickets::list_tickets,
        tickets::create_ticket,
        tickets::show_ticket,
        tickets::update_ticket,
    ),
    tags((name = "tickets", description = "Tickets for sale")),
    modifiers(&Shared)
)]
struct ApiDoc;

pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/tickets/openapi.json`.
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
