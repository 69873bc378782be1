//! Calls to the public `/api/*` routes on behalf of the visitor: their cookie, host and request
//! id go along, and the `Set-Cookie` of sign-in, sign-up and sign-out comes back.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use common::error::{ErrorBody, FieldError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long a page waits for an API before it shows "unavailable" instead.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Tickets per page of the list: a full grid on a wide screen.
const PAGE_SIZE: u32 = 24;

/// The request headers passed through to the APIs. The trace context is not passed through
/// but continued: the API calls are children of this page's span.
const FORWARDED: [&str; 4] = ["cookie", "host", "x-request-id", "x-forwarded-for"];

/// Why an API call did not give what the page wanted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The API refused the request (4xx), with its error entries.
    #[error("the API answered {status}")]
    Rejected {
        /// 400, 401, 404…
        status: StatusCode,
        /// The entries of the error body (empty when the body was not in the error shape).
        errors: Vec<FieldError>,
    },
    /// The API failed (5xx) or could not be reached.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
    /// The API answered something this client does not understand.
    #[error("unexpected API response: {0}")]
    Unexpected(String),
}

/// The token this request's forms carry (put on the request by `csrf.rs`'s guard); the
/// caller hands it to the page it renders.
#[derive(Debug, Clone, Default)]
pub(crate) struct CsrfToken(pub(crate) String);

/// The visitor's headers that go along with every call made for them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    headers: HeaderMap,
    /// The token the visitor's forms must carry.
    csrf: String,
}

impl Caller {
    /// The token the visitor's forms must carry.
    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether the visitor sent a session cookie at all (a cheap "maybe signed in").
    pub(crate) fn has_session(&self) -> bool {
        self.headers.get_all(COOKIE).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(';').any(|c| c.trim().starts_with("session=")))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut headers = HeaderMap::new();
        for name in FORWARDED {
            let name = HeaderName::from_static(name);
            for value in parts.headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(traceparent) = common::telemetry::current_traceparent()
            .and_then(|value| HeaderValue::from_str(&value).ok())
        {
            headers.insert(common::telemetry::TRACEPARENT, traceparent);
        }
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|token| token.0.clone())
            .unwrap_or_default();
        Ok(Self { headers, csrf })
    }
}

/// A successful answer and the cookies it set.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    pub(crate) value: T,
    pub(crate) set_cookies: Vec<HeaderValue>,
}

/// Who is signed in.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) email: String,
}

/// A ticket as the tickets API returns it, or as an order embeds it (without its seller and
/// reservation, which only the tickets API knows).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ticket {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) price: f64,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) order_id: Option<String>,
}

/// An order as the orders API returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Order {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) expires_at: String,
    pub(crate) ticket: Ticket,
    #[serde(default)]
    pub(crate) payment: Option<OrderPayment>,
}

/// An order's payment: `paid`, or on a cancelled order `refunding` / `refunded`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OrderPayment {
    pub(crate) status: String,
}

/// One page of tickets for sale and the cursor of the next, if any.
#[derive(Debug)]
pub(crate) struct TicketPage {
    pub(crate) tickets: Vec<Ticket>,
    pub(crate) next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CurrentUserBody {
    current_user: Option<User>,
}

#[derive(Debug, Serialize)]
struct Credentials<'a> {
    email: &'a str,
    password: &'a str,
}

/// How long an idle connection to an API is kept for the next call: less than the servers'
/// idle timeout (`Limits::header_timeout`, 10 s by default).
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// The public APIs, reached at one base URL, or some of them at their own.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    /// (path prefix, base URL) of the APIs that do not go through `base`.
    elsewhere: Vec<(&'static str, String)>,
}

impl Api {
    /// A client of the APIs at `base` (no trailing slash), the paths under each prefix of
    /// `elsewhere` at that prefix's base URL instead.
    pub(crate) fn new(base: &str, elsewhere: Vec<(&'static str, String)>) -> anyhow::Result<Self> {
        common::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // Idle connections go before the servers close them (`HTTP_HEADER_TIMEOUT_SECONDS`),
            // so a request never races a close.
            .pool_idle_timeout(POOL_IDLE)
            .build()?;
        Ok(Self {
            http,
            base: base.to_owned(),
            elsewhere,
        })
    }

    /// The signed-in visitor, or `None`. Skips the call when there is no session cookie.
    pub(crate) async fn current_user(&self, caller: &Caller) -> Result<Option<User>, CallError> {
        if !caller.has_session() {
            return Ok(None);
        }
        let body: CurrentUserBody = self
            .send(caller, reqwest::Method::GET, "/api/users/currentuser", None)
            .await?
            .value;
        Ok(body.current_user)
    }

    pub(crate) async fn signup(
        &self,
        caller: &Caller,
        email: &str,
        password: &str,
    ) -> Result<Reply<User>, CallError> {
        self.credentials(caller, "/api/users/signup", email, password)
            .await
    }

    pub(crate) async fn signin(
        &self,
        caller: &Caller,
        email: &str,
        password: &str,
    ) -> Result<Reply<User>, CallError> {
        self.credentials(caller, "/api/users/signin", email, password)
            .await
    }

    /// Posts an email and password to sign up or in; the reply carries the session cookie.
    async fn credentials(
        &self,
        caller: &Caller,
        path: &str,
        email: &str,
        password: &str,
    ) -> Result<Reply<User>, CallError> {
        let body = json!(Credentials { email, password });
        self.send(caller, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub(crate) async fn signout(&self, caller: &Caller) -> Result<Reply<()>, CallError> {
        let reply: Reply<serde_json::Value> = self
            .send(caller, reqwest::Method::POST, "/api/users/signout", None)
            .await?;
        Ok(Reply {
            value: (),
            set_cookies: reply.set_cookies,
        })
    }

    /// Tickets for sale, newest first, from the cursor `after`.
    pub(crate) async fn tickets(
        &self,
        caller: &Caller,
        after: Option<&str>,
    ) -> Result<TicketPage, CallError> {
        let path = match after {
            Some(after) => format!(
                "/api/tickets?limit={PAGE_SIZE}&after={}",
                encode_query(after)
            ),
            None => format!("/api/tickets?limit={PAGE_SIZE}"),
        };
        let response = self
            .request(caller, reqwest::Method::GET, &path)
            .send()
            .await
            .map_err(unreachable)?;
        let next = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|link| link.to_str().ok())
            .and_then(next_cursor);
        let tickets = read(response).await?.value;
        Ok(TicketPage { tickets, next })
    }

    pub(crate) async fn ticket(&self, caller: &Caller, id: &str) -> Result<Ticket, CallError> {
        let path = format!("/api/tickets/{}", segment(id)?);
        Ok(self
            .send(caller, reqwest::Method::GET, &path, None)
            .await?
            .value)
    }

    /// Lists a ticket; `price` goes as the number the visitor typed.
    pub(crate) async fn create_ticket(
        &self,
        caller: &Caller,
        title: &str,
        price: f64,
    ) -> Result<Ticket, CallError> {
        let body = json!({ "title": title, "price": price });
        Ok(self
            .send(caller, reqwest::Method::POST, "/api/tickets", Some(body))
            .await?
            .value)
    }

    pub(crate) async fn create_order(
        &self,
        caller: &Caller,
        ticket_id: &str,
    ) -> Result<Order, CallError> {
        let body = json!({ "ticketId": ticket_id });
        Ok(self
            .send(caller, reqwest::Method::POST, "/api/orders", Some(body))
            .await?
            .value)
    }

    pub(crate) async fn orders(&self, caller: &Caller) -> Result<Vec<Order>, CallError> {
        Ok(self
            .send(caller, reqwest::Method::GET, "/api/orders", None)
            .await?
            .value)
    }

    pub(crate) async fn order(&self, caller: &Caller, id: &str) -> Result<Order, CallError> {
        let path = format!("/api/orders/{}", segment(id)?);
        Ok(self
            .send(caller, reqwest::Method::GET, &path, None)
            .await?
            .value)
    }

    pub(crate) async fn cancel_order(&self, caller: &Caller, id: &str) -> Result<(), CallError> {
        let path = format!("/api/orders/{}", segment(id)?);
        let response = self
            .request(caller, reqwest::Method::DELETE, &path)
            .send()
            .await
            .map_err(unreachable)?;
        if response.status().is_success() {
            return Ok(());
        }
        read::<serde_json::Value>(response).await.map(|_| ())
    }

    pub(crate) async fn pay(
        &self,
        caller: &Caller,
        order_id: &str,
        token: &str,
    ) -> Result<(), CallError> {
        let body = json!({ "orderId": order_id, "token": token });
        let _: Reply<serde_json::Value> = self
            .send(caller, reqwest::Method::POST, "/api/payments", Some(body))
            .await?;
        Ok(())
    }

    fn request(
        &self,
        caller: &Caller,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        // The visitor's Host goes along too: behind an ingress its host rule picks the routes.
        let base = self
            .elsewhere
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map_or(&self.base, |(_, base)| base);
        self.http
            .request(method, format!("{base}{path}"))
            .headers(caller.headers.clone())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Reply<T>, CallError> {
        let mut request = self.request(caller, method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(unreachable)?;
        read(response).await
    }
}

fn unreachable(error: reqwest::Error) -> CallError {
    CallError::Unavailable(error.to_string())
}

/// Ids come from the visitor's URL: anything but a plain token is a 404 without a call.
fn segment(id: &str) -> Result<&str, CallError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(CallError::Rejected {
            status: StatusCode::NOT_FOUND,
            errors: Vec::new(),
        })
    }
}

async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<Reply<T>, CallError> {
    let status = response.status();
    let set_cookies = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let bytes = response
        .bytes()
        .await
        .map_err(|error| CallError::Unavailable(error.to_string()))?;
    if status.is_success() {
        let value = serde_json::from_slice(&bytes)
            .map_err(|error| CallError::Unexpected(format!("{status}: {error}")))?;
        return Ok(Reply { value, set_cookies });
    }
    if status.is_client_error() {
        let errors = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|body| body.errors)
            .unwrap_or_default();
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST);
        return Err(CallError::Rejected { status, errors });
    }
    Err(CallError::Unavailable(format!("the API answered {status}")))
}

/// Percent-encodes `value` for a query string (a cursor, a path to come back to).
pub(crate) fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The `after` cursor of a `Link: <…?limit=…&after=X>; rel="next"` header.
fn next_cursor(link: &str) -> Option<String> {
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            let target = part.split_once('<')?.1.split_once('>')?.0;
            let query = target.split_once('?')?.1;
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("after="))
                .map(str::to_owned)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        let link = "</api/tickets?limit=24&after=abc123>; rel=\"next\"";
        assert_eq!(next_cursor(link).as_deref(), Some("abc123"));
        assert_eq!(next_cursor("</x>; rel=\"prev\""), None);
    }

    #[test]
    fn only_plain_ids_reach_the_api() {
        assert!(segment("65a1b2c3d4e5f60718293a4b").is_ok());
        for bad in ["", "../users", "a/b", "a?b", "%2e%2e"] {
            assert!(segment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_api_goes_to_its_own_base_when_one_is_given() {
        let elsewhere = vec![
            ("/api/users/", "http://auth:3000".to_owned()),
            ("/api/orders", "http://orders:3000".to_owned()),
        ];
        let api = Api::new("http://ingress", elsewhere).unwrap();
        let caller = Caller::default();
        let url = |path| {
            api.request(&caller, reqwest::Method::GET, path)
                .build()
                .unwrap()
                .url()
                .to_string()
        };
        assert_eq!(
            url("/api/users/currentuser"),
            "http://auth:3000/api/users/currentuser"
        );
        assert_eq!(url("/api/orders/abc"), "http://orders:3000/api/orders/abc");
        assert_eq!(url("/api/tickets"), "http://ingress/api/tickets");
    }
}
