//! HTTP routes of the orders service.

mod orders;

use axum::Router;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    orders::router()
}
