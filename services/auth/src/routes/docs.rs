//! `/api/docs`: Swagger UI over the four services' OpenAPI documents, from files compiled into
//! the binary (no CDN). Auth serves it because the ingress sends `/api/docs` here, and the
//! documents' URLs lead to each service through the same ingress (or `ticketing up`).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use common::ApiError;
use utoipa_swagger_ui::{Config, Url};

use crate::state::AppState;

/// The documents the UI offers (its "Select a definition" list), first shown first.
pub(crate) const DOCUMENTS: [(&str, &str); 4] = [
    ("auth", "/api/users/openapi.json"),
    ("tickets", "/api/tickets/openapi.json"),
    ("orders", "/api/orders/openapi.json"),
    ("payments", "/api/payments/openapi.json"),
];

/// The UI's settings, written into its `swagger-initializer.js`.
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    let urls = DOCUMENTS.map(|(name, url)| Url::new(name, url));
    Arc::new(
        Config::new(urls)
            // No badge from validator.swagger.io: the page loads nothing from elsewhere.
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true),
    )
});

pub(super) fn router() -> Router<AppState> {
    Router::new()
        // The UI's page refers to its files relatively, so it must be served as a directory.
        .route(
            "/api/docs",
            get(|| async { Redirect::permanent("/api/docs/") }),
        )
        .route("/api/docs/", get(|| swagger_file("index.html")))
        .route("/api/docs/{*file}", get(docs_file))
}

/// `/api/docs/{*file}`. A name that is not text once decoded (`%80`) names no file: 404 in
/// the error shape, like any other, instead of axum's plain-text 400.
async fn docs_file(file: Result<Path<String>, PathRejection>) -> Response {
    match file {
        Ok(Path(file)) => swagger_file(file).await,
        Err(_) => ApiError::NotFound.into_response(),
    }
}

/// One of Swagger UI's files; `swagger-initializer.js` carries [`CONFIG`]. The page, its
/// scripts and its styles are all separate files from this origin, so the server's strict
/// `Content-Security-Policy` holds for them too.
async fn swagger_file(file: impl AsRef<str>) -> Response {
    match utoipa_swagger_ui::serve(file.as_ref(), CONFIG.clone()) {
        Ok(Some(file)) => (
            [(header::CONTENT_TYPE, file.content_type)],
            file.bytes.into_owned(),
        )
            .into_response(),
        Ok(None) => ApiError::NotFound.into_response(),
        Err(error) => {
            ApiError::Internal(anyhow::anyhow!("serve swagger ui: {error}")).into_response()
        }
    }
}
