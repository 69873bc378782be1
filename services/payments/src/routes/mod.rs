//! HTTP routes of the payments service.

mod payments;

use axum::Router;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    payments::router()
}
