//! What every response gets for browsers: security headers, CORS closed unless an allow-list
//! is configured, and HSTS when the site is served over HTTPS.
//!
//! The headers are defaults: a handler that sets one of them (a page with its own
//! `Content-Security-Policy`, say) keeps its own value.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{ConfigError, Env};

/// The policy for JSON APIs and the server-rendered client pages: everything from this origin
/// only, plus Stripe.js (its script, its iframes and its API) for card payments; no plugins,
/// no framing by other sites, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
    script-src 'self' https://js.stripe.com; \
    frame-src https://js.stripe.com https://hooks.stripe.com; \
    connect-src 'self' https://api.stripe.com; \
    img-src 'self' data:; \
    style-src 'self'; \
    object-src 'none'; \
    base-uri 'self'; \
    form-action 'self'; \
    frame-ancestors 'none'";

/// Two years, the usual `Strict-Transport-Security` lifetime once HTTPS is settled.
pub const HSTS: &str = "max-age=63072000";

/// How long a browser may cache a CORS preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The server-wide browser protections, read from `CORS_ALLOWED_ORIGINS` and `COOKIE_SECURE`.
///
/// The default is the strictest: CORS closed and no HSTS (which is harmless to omit on plain
/// HTTP and only matters behind HTTPS).
#[derive(Debug, Clone, Default)]
pub struct HttpSecurity {
    /// Origins (`https://shop.example`) whose pages may call the API with credentials; empty
    /// means no `Access-Control-*` header is ever sent and preflights are not answered.
    pub cors_allowed_origins: Vec<HeaderValue>,
    /// Send `Strict-Transport-Security`: on when cookies are `Secure`, i.e. served over HTTPS.
    pub hsts: bool,
}

impl HttpSecurity {
    /// Reads `CORS_ALLOWED_ORIGINS` (comma-separated exact origins such as
    /// `https://ticketing.dev,http://localhost:5173`; unset: CORS closed) and `COOKIE_SECURE`
    /// (default true: HSTS on).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cors_allowed_origins = match env.get("CORS_ALLOWED_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|origin| !origin.is_empty())
                .map(|origin| {
                    parse_origin(origin).map_err(|reason| ConfigError::Invalid {
                        name: "CORS_ALLOWED_ORIGINS".to_owned(),
                        value: list.clone(),
                        reason,
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            cors_allowed_origins,
            hsts: env.flag_or("COOKIE_SECURE", true)?,
        })
    }

    /// Wraps `router` in the CORS layer (when origins are allowed) and the header layers.
    pub(crate) fn apply(&self, router: Router) -> Router {
        let cors = (!self.cors_allowed_origins.is_empty()).then(|| {
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(self.cors_allowed_origins.clone()))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-request-id"),
                ])
                .expose_headers([header::LINK, HeaderName::from_static("x-request-id")])
                .max_age(PREFLIGHT_MAX_AGE)
        });
        // One layer for the router (each `Router::layer` call boxes every route once more,
        // which costs an allocation per request), and one step for all the headers: a layer
        // per header made every request clone and move the whole stack of them.
        let defaults: std::sync::Arc<[(HeaderName, HeaderValue)]> = [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ]
        .into_iter()
        .chain(
            self.hsts
                .then_some((header::STRICT_TRANSPORT_SECURITY, HSTS)),
        )
        .map(|(name, value)| (name, HeaderValue::from_static(value)))
        .collect();
        router.layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(defaults, headers))
                .option_layer(cors),
        )
    }
}

/// Adds the security headers the handler did not set, and `Cache-Control: no-store` to what
/// answers a request with a session: a page or a body made for one signed-in visitor must not
/// be kept by a shared cache or the browser's back button after signing out.
async fn headers(
    axum::extract::State(defaults): axum::extract::State<
        std::sync::Arc<[(HeaderName, HeaderValue)]>,
    >,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let signed_in = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .any(|value| value.as_bytes().windows(8).any(|w| w == b"session="));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in defaults.iter() {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    if signed_in && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An origin is `scheme://host[:port]` exactly as a browser sends it: no path, no trailing
/// slash, no wildcard (credentials are never shared with `*`).
fn parse_origin(origin: &str) -> Result<HeaderValue, String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} is not an http(s) origin"))?;
    let valid = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err(format!(
            "{origin:?} is not an origin (scheme://host[:port], no path or wildcard)"
        ));
    }
    HeaderValue::from_str(origin).map_err(|e| format!("{origin:?}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt as _;

    fn security(origins: &str, secure: &str) -> HttpSecurity {
        HttpSecurity::from_env(&Env::from_pairs([
            ("CORS_ALLOWED_ORIGINS", origins),
            ("COOKIE_SECURE", secure),
        ]))
        .unwrap()
    }

    async fn send(security: &HttpSecurity, request: Request<Body>) -> axum::response::Response {
        let router = Router::new().route("/json", get(|| async { "{}" })).route(
            "/page",
            get(|| async {
                (
                    [(header::CONTENT_SECURITY_POLICY, "default-src 'none'")],
                    "<p>hi</p>",
                )
            }),
        );
        security.apply(router).oneshot(request).await.unwrap()
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
        for path in ["/json", "/nope"] {
            let response = send(&HttpSecurity::default(), get_from(path, None)).await;
            let headers = response.headers();
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(
                headers["referrer-policy"],
                "strict-origin-when-cross-origin"
            );
            assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
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

    #[test]
    fn only_exact_origins_are_accepted() {
        for bad in [
            "*",
            "shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "https://*.example",
            "ftp://shop.example",
        ] {
            let result = HttpSecurity::from_env(&Env::from_pairs([("CORS_ALLOWED_ORIGINS", bad)]));
            let message = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains("CORS_ALLOWED_ORIGINS"), "{bad}: {message}");
        }
        let ok = security("https://a.example:8443,http://[::1]:3000", "true");
        assert_eq!(ok.cors_allowed_origins.len(), 2);
        assert!(ok.hsts);
    }
}
