//! The one API error type and its HTTP mapping to `{"errors":[{"message","field"?}]}`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// `Result` with [`ApiError`] as the default error, for handlers and domain code.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One entry of the error body. `field` is present only for validation errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Human-readable message, stable enough for clients to show as is.
    #[schema(example = "Title is required")]
    pub message: String,
    /// The request field the message is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(nullable = false, example = "title")]
    pub field: Option<String>,
}

impl FieldError {
    /// An error about one field of the request.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

/// The JSON body of every error response: `{"errors":[{"message":"...","field":"..."}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// At least one error.
    #[schema(min_items = 1)]
    pub errors: Vec<FieldError>,
}

/// Every way a request can fail, each with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or query failed validation; one entry per offending field.
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the request is well-formed but the rules refuse it (e.g. `Email in use`).
    #[error("{0}")]
    BadRequest(String),
    /// 401 `Not authorized`: not signed in, or not the owner of the record.
    #[error("not authorized")]
    NotAuthorized,
    /// 403: the request came from another site (a cross-site form post), or without the
    /// token that proves it came from this one.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `Not found`: no such record or route (also for malformed ids).
    #[error("not found")]
    NotFound,
    /// 409: a concurrent change won; the client may retry.
    #[error("{0}")]
    Conflict(String),
    /// 408 `Request body not received in time`: the client sent its body too slowly.
    #[error("request body not received in time")]
    RequestTimeout,
    /// 413: the body is larger than the server accepts.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 429 `Too many requests, try again later`, with `Retry-After` in whole seconds (at
    /// least 1): the client went over a rate limit.
    #[error("rate limited for {retry_after:?}")]
    TooManyRequests {
        /// How long until the next request would be allowed.
        retry_after: Duration,
    },
    /// 503 `Service busy, try again later`, with `Retry-After`: the service has as much work
    /// waiting as it takes, or a request ran past its time.
    #[error("overloaded")]
    Overloaded {
        /// When to try again.
        retry_after: Duration,
    },
    /// 503: a dependency (MongoDB, NATS) is unreachable; retrying later may succeed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure. The cause is logged, never shown to the client.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl ApiError {
    /// A 400 validation error about a single field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// A 400 with a message and no field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotAuthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body clients see. Internal details stay in the logs.
    pub fn body(&self) -> ErrorBody {
        let message = |m: &str| {
            vec![FieldError {
                message: m.to_owned(),
                field: None,
            }]
        };
        let errors = match self {
            Self::Validation(errors) => errors.clone(),
            Self::BadRequest(m) | Self::Conflict(m) | Self::Forbidden(m) => message(m),
            Self::RequestTimeout => message("Request body not received in time"),
            Self::Overloaded { .. } => message("Service busy, try again later"),
            Self::NotAuthorized => message("Not authorized"),
            Self::NotFound => message("Not found"),
            Self::PayloadTooLarge => message("Request body too large"),
            Self::TooManyRequests { .. } => message("Too many requests, try again later"),
            Self::Unavailable(_) => message("Service temporarily unavailable"),
            Self::Internal(_) => message("Something went wrong"),
        };
        ErrorBody { errors }
    }
}

impl From<mongodb::error::Error> for ApiError {
    fn from(error: mongodb::error::Error) -> Self {
        // An unreachable database is the operator's problem, not a bug: answer 503 so that
        // clients retry and readiness can take the instance out of rotation.
        if crate::mongo::is_unavailable(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Internal(anyhow::Error::new(error).context("mongodb operation"))
        }
    }
}

impl From<anyhow::Error> for ApiError {
    /// A 500, unless a MongoDB outage is somewhere in the chain of causes: that stays a 503
    /// however many contexts were added on the way up.
    fn from(error: anyhow::Error) -> Self {
        if crate::mongo::is_outage(&error) {
            Self::Unavailable(format!("{error:#}"))
        } else {
            Self::Internal(error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(%cause, "dependency unavailable"),
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Self::TooManyRequests { retry_after } | Self::Overloaded { retry_after } = self {
            // Whole seconds, rounded up: a client that waits that long is let through.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// Writes an error body with an arbitrary status, for rejections that come from the framework.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let body = ErrorBody {
        errors: vec![FieldError {
            message: message.to_owned(),
            field: None,
        }],
    };
    (status, axum::Json(body)).into_response()
}

/// The JSON 404 for paths no route serves.
pub async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}

/// 405 in the error shape, for a known path with a method it does not serve.
pub async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_is_omitted_when_absent() {
        let body = ApiError::NotAuthorized.body();
        assert_eq!(
            serde_json::to_value(body).unwrap_or_default(),
            serde_json::json!({"errors":[{"message":"Not authorized"}]})
        );
    }

    #[test]
    fn too_many_requests_is_a_429_with_retry_after_rounded_up() {
        let response = ApiError::TooManyRequests {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = ApiError::TooManyRequests {
            retry_after: Duration::ZERO,
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    fn command_error(code: i32, name: &str) -> mongodb::error::Error {
        let command: mongodb::error::CommandError = mongodb::bson::from_document(
            mongodb::bson::doc! { "code": code, "codeName": name, "errmsg": "from the server" },
        )
        .unwrap();
        mongodb::error::ErrorKind::Command(command).into()
    }

    #[test]
    fn an_unreachable_mongodb_is_a_503_in_the_error_shape() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for error in [
            mongodb::error::Error::from(refused),
            command_error(91, "ShutdownInProgress"),
            command_error(11600, "InterruptedAtShutdown"),
            command_error(10107, "NotWritablePrimary"),
        ] {
            let response = ApiError::from(error).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let body = ApiError::from(command_error(91, "ShutdownInProgress")).body();
        assert_eq!(
            serde_json::to_value(body).unwrap_or_default(),
            serde_json::json!({"errors":[{"message":"Service temporarily unavailable"}]})
        );
    }

    #[test]
    fn an_outage_under_added_context_is_still_a_503() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = anyhow::Error::new(mongodb::error::Error::from(refused))
            .context("load ticket")
            .context("handle request");
        assert_eq!(
            ApiError::from(error).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn other_mongodb_failures_stay_internal() {
        let error = ApiError::from(command_error(2, "BadValue"));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let error = ApiError::from(anyhow::anyhow!("a bug"));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = ApiError::Internal(anyhow::anyhow!("secret connection string"));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.body().errors[0].message, "Something went wrong");
    }
}
