//! What every answer must satisfy: never a 5xx; under `/api` every 4xx in the error shape and
//! JSON; on an owner-only route success for the owner alone; 413 exactly for bodies over the
//! limit; and a route's own check.

use common::server::BODY_LIMIT_BYTES;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use test_support::TestResponse;

use super::case::{Acts, Probe};
use super::fixtures::Fixtures;

/// What a route promises beyond "never 5xx".
#[derive(Clone, Copy)]
pub(super) struct Route {
    /// Counts are kept by this name: the route's method and template.
    pub(super) label: &'static str,
    /// Only the owner of the record may succeed.
    owner_only: bool,
    /// A check of the response specific to the route.
    extra: Option<Check>,
}

/// A route's own check of an answer: what is wrong with it, if anything.
type Check = fn(&Fixtures, &Probe, &TestResponse) -> Result<(), String>;

impl Route {
    /// A route whose only promises are the common ones: never 5xx, and under `/api/` (where
    /// the request actually went) every 4xx in the error shape.
    pub(super) fn new(label: &'static str) -> Self {
        Self {
            label,
            owner_only: false,
            extra: None,
        }
    }

    pub(super) fn owner_only(self) -> Self {
        Self {
            owner_only: true,
            ..self
        }
    }

    pub(super) fn with(self, extra: Check) -> Self {
        Self {
            extra: Some(extra),
            ..self
        }
    }
}

/// What is wrong with `response`, the answer to `probe` on `route` at `path` (the path the
/// server saw), if anything: every promise of the route, checked in turn.
pub(super) fn verdict(
    route: Route,
    fx: &Fixtures,
    probe: &Probe,
    response: &TestResponse,
    path: &str,
) -> Result<(), String> {
    let status = response.status;
    if status.is_server_error() {
        return Err(format!("{status}"));
    }
    let api = path == "/api" || path.starts_with("/api/");
    if api && status.is_client_error() && probe.method != Method::HEAD {
        if let Some(problem) = response.error_shape_violation() {
            return Err(format!("{status} not in the error shape ({problem})"));
        }
        let json = response
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(format!("{status} without a JSON content type"));
        }
    }
    if route.owner_only && status.is_success() && probe.who.acts() != Acts::Owner {
        return Err(format!("{status} for {}", probe.who.describe()));
    }
    // A body over the limit is refused before any route sees it, whatever the route.
    let oversized = probe
        .body
        .bytes
        .as_ref()
        .is_some_and(|b| b.0.len() > BODY_LIMIT_BYTES);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return if oversized {
            Ok(())
        } else {
            Err(format!("{status} for a body within the limit"))
        };
    }
    match route.extra {
        Some(extra) => extra(fx, probe, response),
        None => Ok(()),
    }
}

/// `currentuser` tells exactly who the session says, and nobody for a session that is not valid.
pub(super) fn current_user_is_the_session(
    fx: &Fixtures,
    probe: &Probe,
    response: &TestResponse,
) -> Result<(), String> {
    let user = &response.body["currentUser"];
    let expected = match probe.who.acts() {
        Acts::Nobody => user.is_null(),
        Acts::Owner => user["id"] == fx.owner.id.as_str(),
        Acts::Other => user.is_object() && user["id"] != fx.owner.id.as_str(),
    };
    if response.status == StatusCode::OK && expected {
        Ok(())
    } else {
        Err(format!(
            "{} {} for {}",
            response.status,
            response.body,
            probe.who.describe()
        ))
    }
}
