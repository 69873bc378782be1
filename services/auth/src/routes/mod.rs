//! HTTP routes of the auth service, its OpenAPI document, and the Swagger UI over every
//! service's document.

mod docs;
mod users;

use axum::Router;
use common::openapi::Shared;
use utoipa::OpenApi as _;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    users::router()
        .merge(docs::router())
        .route("/api/users/openapi.json", common::openapi::serve(openapi))
}

/// The document of the `/api/users/*` routes, from the handlers' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ticketing: auth",
        description = "Accounts and sessions: sign up, sign in, sign out, and who is signed in. \
            Signing up or in sets the `session` cookie that the other services read."
    ),
    paths(
        users::sign_up,
        users::sign_in,
        users::sign_out,
        users::current_user,
    ),
    tags((name = "users", description = "Accounts and sessions")),
    modifiers(&Shared)
)]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
