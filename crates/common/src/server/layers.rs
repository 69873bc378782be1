//! The layers every server puts around its routes: request id, tracing span, security headers
//! and CORS, the request's time bounds, panic guard, body limit, and the error-shaped 405.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, Response, StatusCode};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use super::{BODY_LIMIT_BYTES, Limits, bounds};
use crate::security::HttpSecurity;

/// The layers every server applies, outermost first: request id, tracing span, security
/// headers and CORS (see [`HttpSecurity`]), the request's time bounds and its body read whole
/// (`bounds.rs`), panic guard, body limit, and the error-shaped 405 fallback (the 404 fallback
/// is the server's: JSON, or the client's page).
pub(super) fn with_common_layers(
    router: Router,
    security: &HttpSecurity,
    limits: &Limits,
) -> Router {
    // Each `Router::layer` call boxes every route once more (an allocation and a clone per
    // request), so the layers go on in as few calls as possible.
    let router = router
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    *limits,
                    bounds::bound_request,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    *limits,
                    bounds::read_body,
                ))
                .layer(CatchPanicLayer::custom(
                    |_panic: Box<dyn std::any::Any + Send>| {
                        tracing::error!("handler panicked");
                        crate::error::error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Something went wrong",
                        )
                    },
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        );
    security.apply(router).layer(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(SequentialRequestIds))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<axum::body::Body>| {
                        let request_id = request
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        let span = tracing::info_span!(
                            "request",
                            method = %request.method(),
                            path = %request.uri().path(),
                            request_id,
                            trace_id = tracing::field::Empty,
                        );
                        crate::telemetry::continue_trace(
                            &span,
                            &crate::telemetry::HttpHeaders(request.headers()),
                        );
                        span
                    })
                    .on_response(
                        |response: &Response<axum::body::Body>,
                         latency: Duration,
                         _span: &tracing::Span| {
                            tracing::debug!(
                                status = response.status().as_u16(),
                                latency_us = latency.as_micros() as u64,
                                "response"
                            );
                        },
                    ),
            ),
    )
}

/// Request ids unique across processes without a random draw per request: a random prefix
/// chosen once per process, then a counter (`3f2a9c1e7b44-1a`).
#[derive(Debug, Clone, Copy, Default)]
struct SequentialRequestIds;

impl MakeRequestId for SequentialRequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let prefix = PREFIX.get_or_init(|| {
            use std::hash::BuildHasher as _;
            // RandomState is seeded from the OS once per process.
            let seed = std::hash::RandomState::new().hash_one(std::process::id());
            format!("{:012x}", seed & 0xffff_ffff_ffff)
        });
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{prefix}-{n:x}"))
            .ok()
            .map(RequestId::new)
    }
}
