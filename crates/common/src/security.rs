//! What every response gets for browsers: security headers, CORS closed unless an allow-list
//! is configured, and HSTS when the site is served over HTTPS.
//!
//! The headers are defaults: a handler that sets one of them (a page with its own
//! `Content-Security-Policy`, say) keeps its own value.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::Entry;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{ConfigError, Env};

/// The policy for the server-rendered client pages and anything else a browser may run:
/// everything from this origin only, plus Stripe.js (its script, its iframes and its API) for
/// card payments; no plugins, no framing by other sites, forms post only here.
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

/// The policy for JSON answers, which a browser never runs: nothing may load, nothing may
/// frame them (OWASP's REST security headers); 42 bytes on every API answer instead of the
/// page policy's 280.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

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

    /// The CORS layer, when origins are allowed (none: no `Access-Control-*` header is sent
    /// and preflights fall through to the routes).
    pub(crate) fn cors(&self) -> Option<CorsLayer> {
        (!self.cors_allowed_origins.is_empty()).then(|| {
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
        })
    }

    /// The headers every response gets unless its handler set them.
    pub(crate) fn headers(&self) -> SecurityHeaders {
        let defaults = [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
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
        SecurityHeaders(defaults)
    }
}

/// The security headers of every response, written once, after the handler (see
/// `server::envelope`).
#[derive(Debug, Clone)]
pub(crate) struct SecurityHeaders(Arc<[(HeaderName, HeaderValue)]>);

impl SecurityHeaders {
    /// Whether a request carries a session: what answers it is made for one signed-in visitor.
    pub(crate) fn signed_in(request: &HeaderMap) -> bool {
        request
            .get_all(header::COOKIE)
            .iter()
            .any(|value| value.as_bytes().windows(8).any(|w| w == b"session="))
    }

    /// Adds the headers the handler did not set, and `Cache-Control: no-store` to what answers
    /// a request with a session: it must not be kept by a shared cache or the browser's back
    /// button after signing out.
    /// The policy is chosen by what the answer is: JSON gets the API's, anything else the
    /// page's.
    pub(crate) fn apply(&self, signed_in: bool, response: &mut HeaderMap) {
        // Room for every header added here at once, so the map grows at most once.
        response.reserve(self.0.len() + 3);
        let json = is_json(response);
        // One lookup per header: `entry` finds it or the place to put it.
        if let Entry::Vacant(place) = response.entry(header::CONTENT_SECURITY_POLICY) {
            let policy = if json {
                API_CONTENT_SECURITY_POLICY
            } else {
                CONTENT_SECURITY_POLICY
            };
            place.insert(HeaderValue::from_static(policy));
        }
        for (name, value) in self.0.iter() {
            if let Entry::Vacant(place) = response.entry(name) {
                place.insert(value.clone());
            }
        }
        if signed_in && let Entry::Vacant(place) = response.entry(header::CACHE_CONTROL) {
            place.insert(HeaderValue::from_static("no-store"));
        }
    }
}

/// Whether an answer is JSON (`application/json`, `application/problem+json`).
fn is_json(response: &HeaderMap) -> bool {
    response
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            let essence = essence.trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.eq_ignore_ascii_case("application/problem+json")
        })
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
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The protections `CORS_ALLOWED_ORIGINS=origins` and `COOKIE_SECURE=secure` ask for.
    pub(crate) fn security(origins: &str, secure: &str) -> HttpSecurity {
        HttpSecurity::from_env(&Env::from_pairs([
            ("CORS_ALLOWED_ORIGINS", origins),
            ("COOKIE_SECURE", secure),
        ]))
        .unwrap()
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
