//! Cross-site request forgery: no other site may make a visitor's browser sign in, sign out,
//! sell, buy, pay or cancel.
//!
//! Two checks on every form post. First the browser's own word: an `Origin` that is not this
//! site (or `null`), or, without one, `Sec-Fetch-Site: cross-site`, is refused. Then a token
//! for browsers that send neither: every form carries `_csrf`, a digest of the visitor's
//! `csrf` cookie (random, `HttpOnly`, `SameSite=Strict`, set on the first page) and of their
//! session cookie. Another site can read neither cookie, so it cannot write the field; a cookie
//! planted from a sibling domain still cannot match a session it does not know. A refused post
//! gets 403, changes nothing and sets no cookie.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use common::session::cookie;
use sha2::{Digest as _, Sha256};

use crate::api::CsrfToken;
use crate::pages::PageError;

/// The cookie that ties a visitor's forms to their browser.
const COOKIE: &str = "csrf";
/// The form field that carries the token.
pub(crate) const FIELD: &str = "_csrf";

/// Whether the `csrf` cookie is `Secure` (`COOKIE_SECURE`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookieSecure(pub(crate) bool);

/// The middleware over every page: refuses cross-site and token-less posts, and gives every
/// request its token (and the browser its `csrf` cookie, the first time).
pub(crate) async fn guard(
    State(CookieSecure(secure)): State<CookieSecure>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let (id, fresh) = match cookie(&parts.headers, COOKIE).filter(|id| is_id(id)) {
        Some(id) => (id.to_owned(), false),
        None => (new_id(), true),
    };
    let token = token(&id, cookie(&parts.headers, "session").unwrap_or_default());
    let body = if parts.method == Method::POST {
        if let Some(site) = cross_site(&parts.headers) {
            tracing::info!(%site, path = %parts.uri.path(), "cross-site post refused");
            return PageError::Forbidden.into_response();
        }
        // Bodies arrive read whole (the server's limits), so this is a copy in memory.
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return PageError::BadForm.into_response();
        };
        if !same(form_field(&bytes, FIELD).as_deref(), &token) {
            tracing::info!(path = %parts.uri.path(), "post without this visitor's form token");
            return PageError::Forbidden.into_response();
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(CsrfToken(token));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if fresh {
        let secure = if secure { "; Secure" } else { "" };
        let value = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The site a post comes from when it is not this one: its `Origin`, or `cross-site` from
/// `Sec-Fetch-Site` when the browser sent no `Origin`.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        // `scheme://host[:port]`: the host and port must be the ones the visitor asked.
        let authority = origin.split_once("://").map(|(_, authority)| authority);
        return (authority.is_none() || authority != host).then(|| origin.to_owned());
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    (fetch_site == Some("cross-site")).then(|| "cross-site".to_owned())
}

/// 32 random bytes, hex.
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

fn is_id(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The token of a browser (`id`) and session: it changes when the visitor signs in or out.
fn token(id: &str, session: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"ticketing-csrf\0");
    digest.update(id.as_bytes());
    digest.update(b"\0");
    digest.update(session.as_bytes());
    hex(&digest.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time that does not depend on where the two differ.
fn same(given: Option<&str>, expected: &str) -> bool {
    let Some(given) = given else { return false };
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The first value of `name` in an `application/x-www-form-urlencoded` body, whatever else
/// the body holds (the form's own reader judges the rest).
fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|b| *b == b'&')
        .filter_map(|pair| {
            let at = pair.iter().position(|b| *b == b'=')?;
            Some((&pair[..at], &pair[at + 1..]))
        })
        .find(|(key, _)| *key == name.as_bytes())
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_this_sites_posts_pass_the_browsers_check() {
        let same = headers(&[
            ("host", "ticketing.dev"),
            ("origin", "https://ticketing.dev"),
        ]);
        assert_eq!(cross_site(&same), None);
        let local = headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000"),
        ]);
        assert_eq!(cross_site(&local), None);
        for origin in [
            "https://evil.example",
            "null",
            "https://ticketing.dev.evil.example",
        ] {
            let other = headers(&[("host", "ticketing.dev"), ("origin", origin)]);
            assert!(cross_site(&other).is_some(), "{origin}");
        }
        let no_origin = headers(&[("host", "ticketing.dev"), ("sec-fetch-site", "cross-site")]);
        assert!(cross_site(&no_origin).is_some());
        let old_browser = headers(&[("host", "ticketing.dev")]);
        assert_eq!(cross_site(&old_browser), None, "left to the token");
    }

    #[test]
    fn the_token_belongs_to_one_browser_and_one_session() {
        let id = new_id();
        assert!(is_id(&id));
        assert_eq!(token(&id, "s1"), token(&id, "s1"));
        assert_ne!(token(&id, "s1"), token(&id, "s2"));
        assert_ne!(token(&id, "s1"), token(&new_id(), "s1"));
        let form = format!("email=a%40b.c&{FIELD}={}&password=x", token(&id, "s1"));
        assert!(same(
            form_field(form.as_bytes(), FIELD).as_deref(),
            &token(&id, "s1")
        ));
        assert!(!same(None, &token(&id, "s1")));
        assert!(!same(Some("short"), &token(&id, "s1")));
    }
}
