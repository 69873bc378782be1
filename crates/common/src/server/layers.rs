//! The layers every route gets, outermost first: the HTTP metrics, the request's envelope (id,
//! span, time bounds, body, turn, run to the end, security headers: `envelope.rs`), CORS, the
//! body limit, and the error-shaped 405 fallback (the 404 fallback is the server's: JSON, or
//! the client's page).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::cors::CorsLayer;

use super::admission::Admission;
use super::envelope::EnvelopeLayer;
use super::{BODY_LIMIT_BYTES, Limits};
use crate::metrics::HttpMetrics;
use crate::security::{HttpSecurity, SecurityHeaders};

/// The layers of one server, put around each of its routers.
#[derive(Debug, Clone)]
pub(super) struct Layers {
    metrics: HttpMetrics,
    limits: Limits,
    headers: SecurityHeaders,
    cors: Option<CorsLayer>,
}

impl Layers {
    pub(super) fn new(security: &HttpSecurity, limits: &Limits, metrics: HttpMetrics) -> Self {
        Self {
            metrics,
            limits: *limits,
            headers: security.headers(),
            cors: security.cors(),
        }
    }

    /// The HTTP series that `/metrics` reports.
    pub(super) fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    /// Wraps every route of `router`, and its fallback, in the layers; with `admission`, its
    /// requests wait for their turn (a service's routes). The metrics see the matched route:
    /// `Router::layer` runs after routing.
    pub(super) fn around(&self, router: Router, admission: Option<Arc<Admission>>) -> Router {
        // Each `Router::layer` call boxes every route once more (an allocation and a clone per
        // request), so all the layers go on in one call.
        router
            .method_not_allowed_fallback(crate::error::method_not_allowed)
            .layer(
                tower::ServiceBuilder::new()
                    .layer(self.metrics.layer())
                    .layer(EnvelopeLayer::new(
                        self.limits,
                        self.headers.clone(),
                        admission,
                    ))
                    .option_layer(self.cors.clone())
                    .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
            )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::security::tests::security;
    use crate::security::{API_CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY, HSTS};
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn send(security: &HttpSecurity, request: Request<Body>) -> axum::response::Response {
        let router = Router::new()
            .route("/json", get(|| async { axum::Json("{}") }))
            .route("/text", get(|| async { "hi" }))
            .route(
                "/page",
                get(|| async {
                    (
                        [(header::CONTENT_SECURITY_POLICY, "default-src 'none'")],
                        "<p>hi</p>",
                    )
                }),
            );
        Layers::new(security, &Limits::default(), HttpMetrics::default())
            .around(router.fallback(crate::error::not_found), None)
            .oneshot(request)
            .await
            .unwrap()
    }

    fn get_from(path: &str, origin: Option<&str>) -> Request<Body> {
        let mut request = Request::get(path);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.body(Body::empty()).unwrap()
    }

    fn preflight(origin: &str) -> Request<Body> {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/json")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    }

    fn access_control_headers(response: &axum::response::Response) -> Vec<String> {
        response
            .headers()
            .keys()
            .map(|name| name.as_str().to_owned())
            .filter(|name| name.starts_with("access-control-"))
            .collect()
    }

    #[tokio::test]
    async fn every_response_carries_the_security_headers() {
        for (path, policy) in [
            ("/json", API_CONTENT_SECURITY_POLICY),
            ("/nope", API_CONTENT_SECURITY_POLICY),
            ("/text", CONTENT_SECURITY_POLICY),
        ] {
            let response = send(&HttpSecurity::default(), get_from(path, None)).await;
            let headers = response.headers();
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(
                headers["referrer-policy"],
                "strict-origin-when-cross-origin"
            );
            assert_eq!(headers["content-security-policy"], policy, "{path}");
            assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
            assert!(!headers.contains_key("strict-transport-security"));
        }
    }

    #[tokio::test]
    async fn what_answers_a_session_is_never_stored() {
        let with_session = Request::get("/json")
            .header(header::COOKIE, "theme=dark; session=abc")
            .body(Body::empty())
            .unwrap();
        let response = send(&HttpSecurity::default(), with_session).await;
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let anonymous = send(&HttpSecurity::default(), get_from("/json", None)).await;
        assert!(!anonymous.headers().contains_key(header::CACHE_CONTROL));
    }

    #[tokio::test]
    async fn a_handler_keeps_its_own_content_security_policy() {
        let response = send(&HttpSecurity::default(), get_from("/page", None)).await;
        assert_eq!(
            response.headers()["content-security-policy"],
            "default-src 'none'"
        );
    }

    #[tokio::test]
    async fn hsts_is_sent_only_when_cookies_are_secure() {
        let response = send(&security("", "true"), get_from("/json", None)).await;
        assert_eq!(response.headers()["strict-transport-security"], HSTS);
        let response = send(&security("", "false"), get_from("/json", None)).await;
        assert!(!response.headers().contains_key("strict-transport-security"));
    }

    #[tokio::test]
    async fn cors_is_closed_without_an_allow_list() {
        let closed = security("", "false");
        let response = send(&closed, get_from("/json", Some("https://evil.example"))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(access_control_headers(&response).is_empty());

        // A preflight falls through to the router, which has no OPTIONS route.
        let response = send(&closed, preflight("https://evil.example")).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(access_control_headers(&response).is_empty());
    }

    #[tokio::test]
    async fn listed_origins_are_allowed_with_credentials_and_others_are_not() {
        let open = security("https://shop.example, http://localhost:5173", "false");
        let response = send(&open, preflight("https://shop.example")).await;
        assert!(response.status().is_success(), "{}", response.status());
        let headers = response.headers();
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://shop.example"
        );
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert!(
            headers["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        assert_eq!(headers["x-frame-options"], "DENY");

        let response = send(&open, get_from("/json", Some("http://localhost:5173"))).await;
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "http://localhost:5173"
        );

        for other in ["https://evil.example", "https://shop.example.evil.example"] {
            let response = send(&open, get_from("/json", Some(other))).await;
            assert!(
                !response
                    .headers()
                    .contains_key("access-control-allow-origin"),
                "{other}"
            );
            let response = send(&open, preflight(other)).await;
            assert!(
                !response
                    .headers()
                    .contains_key("access-control-allow-origin"),
                "{other}"
            );
        }
    }
}
