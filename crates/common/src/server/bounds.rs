//! Time bounds on one request: its body is read whole, within the body timeout, before it
//! takes a slot (a slow sender gets 408 and never holds a slot); the whole request, waiting for
//! its slot included, is answered within the request timeout (503 otherwise; its work still
//! runs to its end, see `detached`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::{BODY_LIMIT_BYTES, Limits};
use crate::error::ApiError;

/// The request with its body (at most [`BODY_LIMIT_BYTES`]) read whole within
/// `limits.body_timeout`, or the answer that refuses it.
pub(super) async fn read_body(limits: &Limits, request: Request) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    if axum::body::HttpBody::is_end_stream(&body) {
        return Ok(Request::from_parts(parts, body));
    }
    let read = Limited::new(body, BODY_LIMIT_BYTES).collect();
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(close(ApiError::PayloadTooLarge.into_response()));
        }
        Ok(Err(_)) => {
            return Err(close(
                ApiError::bad_request("Could not read the request body").into_response(),
            ));
        }
        Err(_) => {
            tracing::info!(
                timeout_ms = limits.body_timeout.as_millis() as u64,
                "request body not received in time"
            );
            return Err(close(ApiError::RequestTimeout.into_response()));
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The answer to a request not answered within `limits.request_timeout`: 503 with
/// `Retry-After`.
pub(super) fn timed_out(limits: &Limits) -> Response {
    tracing::warn!(
        timeout_ms = limits.request_timeout.as_millis() as u64,
        "request not answered in time"
    );
    ApiError::Overloaded {
        retry_after: std::time::Duration::from_secs(1),
    }
    .into_response()
}

/// The connection closes after this response: what is left of a body is not worth reading.
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
