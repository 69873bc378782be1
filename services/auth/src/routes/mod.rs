//! HTTP routes of the auth service.

mod users;

use axum::Router;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    users::router()
}
