//! HTTP routes of the tickets service.

mod tickets;

use axum::Router;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    tickets::router()
}
