//! `RecordId`: a route's `{id}` as an ObjectId, anything else a 404.

use mongodb::bson::oid::ObjectId;

use crate::error::ApiError;

/// Parses a record id from a URL path; anything that is not an ObjectId is simply not found.
pub fn path_id(id: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse_str(id).map_err(|_| ApiError::NotFound)
}

/// The `{id}` of a route as an ObjectId. Anything else — including a segment that is not
/// valid UTF-8 once decoded, which axum's `Path` would answer with a plain-text 400 — is a
/// 404 in the error shape.
#[derive(Debug, Clone, Copy)]
pub struct RecordId(pub ObjectId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RecordId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        path_id(&id).map(Self)
    }
}
