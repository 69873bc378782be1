//! Time bounds on one request: its body is read whole, within the body timeout, before it
//! takes a slot (a slow sender gets 408 and never holds a slot); the whole request, waiting for
//! its slot included, is answered within the request timeout (503 otherwise; its work still
//! runs to its end, see `detached`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::{BODY_LIMIT_BYTES, Limits};
use crate::error::ApiError;

/// Reads the body whole (at most [`BODY_LIMIT_BYTES`]) within `limits.body_timeout`, then
/// hands the request on with the body in memory.
pub(super) async fn read_body(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if axum::body::HttpBody::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let read = Limited::new(body, BODY_LIMIT_BYTES).collect();
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return close(ApiError::PayloadTooLarge.into_response());
        }
        Ok(Err(_)) => {
            return close(ApiError::bad_request("Could not read the request body").into_response());
        }
        Err(_) => {
            tracing::info!(
                timeout_ms = limits.body_timeout.as_millis() as u64,
                "request body not received in time"
            );
            return close(ApiError::RequestTimeout.into_response());
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Answers 503 with `Retry-After` when the rest of the request takes longer than
/// `limits.request_timeout`.
pub(super) async fn bound_request(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_ms = limits.request_timeout.as_millis() as u64,
                "request not answered in time"
            );
            ApiError::Overloaded {
                retry_after: std::time::Duration::from_secs(1),
            }
            .into_response()
        }
    }
}

/// The connection closes after this response: what is left of a body is not worth reading.
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
