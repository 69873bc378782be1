//! The pages' routes, at the original client's paths, and the HTML 404 for the rest.

mod auth;
mod orders;
mod tickets;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::{CallError, Caller, User};
use crate::assets;
use crate::pages::PageError;
use crate::state::AppState;

/// Every page and asset.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(tickets::index))
        .route("/auth/signup", get(auth::signup_form).post(auth::signup))
        .route("/auth/signin", get(auth::signin_form).post(auth::signin))
        .route("/auth/signout", get(auth::signout_link).post(auth::signout))
        .route("/tickets/new", get(tickets::new_form).post(tickets::create))
        .route("/tickets/{id}", get(tickets::show).post(tickets::purchase))
        .route("/orders", get(orders::index))
        .route("/orders/{id}", get(orders::show).post(orders::pay))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/assets/app.css", get(assets::css))
        .route("/assets/app.js", get(assets::js))
        .route("/assets/favicon.svg", get(assets::icon))
        .with_state(state)
}

/// Paths nobody routes: the JSON 404 under `/api/`, this client's 404 page elsewhere.
pub(crate) fn fallback(state: AppState) -> Router {
    Router::new().fallback(not_found).with_state(state)
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        return common::error::not_found().await;
    }
    PageError::NotFound.into_response()
}

/// The id segment of `/tickets/{id}` and `/orders/{id}`; one that is not even text is a 404
/// page like any unknown id.
pub(crate) struct PageId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PageId {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|_| PageError::NotFound)
    }
}

/// Who is signed in, for the header. The page still renders if auth cannot say.
async fn viewer(state: &AppState, caller: &Caller) -> Option<User> {
    match state.api.current_user(caller).await {
        Ok(user) => user,
        Err(error) => {
            tracing::warn!(%error, "current user unknown");
            None
        }
    }
}

/// The visitor and the record a page at `here` shows, fetched side by side; a record the API
/// refuses or cannot give is the page's error (sign in, not found, unavailable).
async fn viewer_and<T>(
    state: &AppState,
    caller: &Caller,
    here: &str,
    record: impl Future<Output = Result<T, CallError>>,
) -> Result<(Option<User>, T), PageError> {
    let (viewer, record) = tokio::join!(viewer(state, caller), record);
    let record = record.map_err(|error| PageError::from_call(error, caller, here))?;
    Ok((viewer, record))
}

/// A local path to return to after signing in; anything else (other hosts, `//evil`) is `/`.
/// Control characters are refused too: they cannot be written in a `Location` header (the
/// redirect would fail with a 500) and have no place in a path anyway.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if local { next } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/orders/abc"), "/orders/abc");
        assert_eq!(safe_next("/tickets/é"), "/tickets/é");
        for foreign in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "",
            "/\0",
            "/\r\nSet-Cookie: session=x",
            "/orders\u{7f}",
            "/\u{85}",
        ] {
            assert_eq!(safe_next(foreign), "/", "{foreign}");
        }
    }
}
