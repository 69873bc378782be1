//! HTTP routes of the payments service, and its OpenAPI document.

mod payments;

use axum::Router;
use common::openapi::Shared;
use utoipa::OpenApi as _;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    payments::router().route(
        "/api/payments/openapi.json",
        common::openapi::serve(openapi),
    )
}

/// The document of every route above, from the handlers' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ticketing: payments",
        description = "Payments: buyers pay for their orders with a card token, through Stripe \
            (`STRIPE_KEY`) or, with `PAYMENTS_GATEWAY=local`, a local test gateway. A charge \
            whose answer is lost is reconciled with the gateway; one that lands on an order \
            cancelled meanwhile is refunded."
    ),
    paths(payments::create_payment),
    tags((name = "payments", description = "Card payments for orders")),
    modifiers(&Shared)
)]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
