//! HTTP routes of the orders service, and its OpenAPI document.

mod orders;

use axum::Router;
use common::openapi::Shared;
use utoipa::OpenApi as _;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    orders::router().route("/api/orders/openapi.json", common::openapi::serve(openapi))
}

/// The document of every route above, from the handlers' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ticketing: orders",
        description = "Orders: buyers place orders that hold a ticket until paid, cancelled or \
            expired. The service keeps its own replica of tickets, built from ticket events."
    ),
    paths(
        orders::list_orders,
        orders::create_order,
        orders::show_order,
        orders::cancel_order,
        orders::show_replicated_ticket,
    ),
    tags((name = "orders", description = "Orders and the replica of tickets")),
    modifiers(&Shared)
)]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
