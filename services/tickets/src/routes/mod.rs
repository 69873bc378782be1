//! HTTP routes of the tickets service, and its OpenAPI document.

mod tickets;

use axum::Router;
use common::openapi::Shared;
use utoipa::OpenApi as _;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    tickets::router().route("/api/tickets/openapi.json", common::openapi::serve(openapi))
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

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
