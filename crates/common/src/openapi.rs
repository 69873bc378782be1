//! What every service's OpenAPI document shares: the `session` cookie security scheme and the
//! error shape's schemas ([`ErrorBody`] and
//! [`FieldError`] derive `ToSchema` where they are defined).
//!
//! Each service derives its own document from its handlers' `#[utoipa::path]` annotations and
//! adds [`Shared`] as a modifier:
//!
//! ```ignore
//! #[derive(utoipa::OpenApi)]
//! #[openapi(paths(tickets::create_ticket /* , … */), modifiers(&common::openapi::Shared))]
//! struct ApiDoc;
//! ```
//!
//! An operation that needs a signed-in user names the scheme: `security(("session" = []))`
//! (the attribute takes a literal, so it cannot use [`SESSION_SCHEME`]).
//!
//! The error responses every service documents alike are written once here and inlined where
//! an operation lists them: `(status = 503, response = inline(common::openapi::Unavailable))`
//! ([`Unavailable`], [`TooLarge`], [`SignedOut`]).

use axum::Json;
use axum::routing::{MethodRouter, get};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, OpenApi, Ref, RefOr, Response};

use crate::error::{ErrorBody, FieldError};

/// Name of the security scheme in every document: an API key in the session cookie.
pub const SESSION_SCHEME: &str = "session";

/// An ObjectId in the form every id of the API takes, for examples.
pub const EXAMPLE_ID: &str = "64b7f0c2a1e4d93f2c8b4567";

/// What holds for every operation of every service, appended to each document's description.
pub const CONVENTIONS: &str = "Bodies are JSON with camelCase fields; ids are MongoDB \
ObjectId hex strings. Every error has the shape `{\"errors\":[{\"message\":\"…\",\"field\":\"…\"}]}` \
(`field` only for validation errors). Besides the statuses listed per operation, any request \
may get 500 `Something went wrong` (a bug; the cause is logged, not shown), 503 `Service busy, \
try again later` with `Retry-After` (the service's queue is full, or the request ran past its \
time), 408 (a body not sent in time), an unknown path 404 and a known path with another method \
405, all in that shape. Operations marked with the \
`session` scheme need the `session` cookie that signup and signin set.";

/// A `utoipa` modifier that adds what every document shares: the [`SESSION_SCHEME`] security
/// scheme (the `session` cookie that signup and signin set), the error schemas (present and
/// described once even in a document whose operations cannot fail), and [`CONVENTIONS`] at the
/// end of the description.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shared;

impl utoipa::Modify for Shared {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::{PartialSchema as _, ToSchema as _};
        let description = openapi.info.description.get_or_insert_with(String::new);
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(CONVENTIONS);
        let components = openapi
            .components
            .get_or_insert_with(|| ComponentsBuilder::new().build());
        components.add_security_scheme(
            SESSION_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session::COOKIE_NAME,
                "The session JWT that `POST /api/users/signup` and `POST /api/users/signin` \
                 set (HttpOnly, SameSite=Lax). Browsers and Postman send it back by themselves.",
            ))),
        );
        for (name, schema) in [
            (ErrorBody::name(), ErrorBody::schema()),
            (FieldError::name(), FieldError::schema()),
        ] {
            components
                .schemas
                .entry(name.into_owned())
                .or_insert(schema);
        }
    }
}

/// A response in the error shape with one message as its example, as `(status = …,
/// description = …, body = ErrorBody, example = json!({"errors": [{"message": …}]}))` writes it.
pub fn error_response(description: &str, message: &str) -> RefOr<Response> {
    error_response_builder(description, message).build().into()
}

/// [`error_response`], to add headers to.
pub fn error_response_builder(description: &str, message: &str) -> ResponseBuilder {
    use utoipa::ToSchema as _;
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
        .example(Some(serde_json::json!({"errors": [{"message": message}]})))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
}

/// 503: the database is unreachable.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

impl<'r> utoipa::ToResponse<'r> for Unavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        let description = "The database is unreachable; retry later";
        let message = crate::error::ApiError::Unavailable(String::new())
            .body()
            .errors[0]
            .message
            .clone();
        ("Unavailable", error_response(description, &message))
    }
}

/// 413: the body is over [`crate::server::BODY_LIMIT_BYTES`].
#[derive(Debug, Clone, Copy)]
pub struct TooLarge;

impl<'r> utoipa::ToResponse<'r> for TooLarge {
    fn response() -> (&'r str, RefOr<Response>) {
        let description = format!(
            "The body is over {} KiB",
            crate::server::BODY_LIMIT_BYTES / 1024
        );
        let message = crate::error::ApiError::PayloadTooLarge.body().errors[0]
            .message
            .clone();
        ("TooLarge", error_response(&description, &message))
    }
}

/// 401: the operation needs a signed-in user and there is none.
#[derive(Debug, Clone, Copy)]
pub struct SignedOut;

impl<'r> utoipa::ToResponse<'r> for SignedOut {
    fn response() -> (&'r str, RefOr<Response>) {
        let message = crate::error::ApiError::NotAuthorized.body().errors[0]
            .message
            .clone();
        let description = format!("`{message}`: not signed in");
        ("SignedOut", error_response(&description, &message))
    }
}

/// 429 as the rate-limited routes document it: the error shape, and how long to wait in
/// `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited;

impl<'r> utoipa::ToResponse<'r> for RateLimited {
    fn response() -> (
        &'r str,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    ) {
        use utoipa::openapi::header::HeaderBuilder;
        let message = crate::error::ApiError::TooManyRequests {
            retry_after: std::time::Duration::ZERO,
        }
        .body()
        .errors[0]
            .message
            .clone();
        let description = format!(
            "`{message}`: over a rate limit (sign-up and sign-in per client address and per \
             account; writes per user); retry after `Retry-After` seconds"
        );
        let retry_after = HeaderBuilder::new()
            .schema(<u64 as utoipa::PartialSchema>::schema())
            .description(Some("Seconds until a new attempt is allowed"))
            .build();
        let response = error_response_builder(&description, &message)
            .header("Retry-After", retry_after)
            .build();
        ("RateLimited", response.into())
    }
}

/// What every write route may answer besides its own outcomes: 413 (a body over the limit),
/// 429 (over a rate limit) and 503 (the database unreachable). An operation lists it among
/// its responses: `responses((status = 201, …), WriteFailures)`.
#[derive(Debug, Clone, Copy)]
pub struct WriteFailures;

impl utoipa::IntoResponses for WriteFailures {
    fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
        use utoipa::ToResponse as _;
        [
            ("413", TooLarge::response().1),
            ("429", RateLimited::response().1),
            ("503", Unavailable::response().1),
        ]
        .into_iter()
        .map(|(status, response)| (status.to_owned(), response))
        .collect()
    }
}

/// The characters `str::trim` removes (Unicode `White_Space`), as the inside of a regex
/// character class that JSON Schema validators (ECMA-262) and Python's `re` read alike.
const WHITE_SPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A pattern matching the strings whose length once trimmed (`str::trim`, in characters) is
/// from `min` (at least 1) to `max` (at least 2): what `minLength` and `maxLength` cannot say
/// of a value the server trims before counting, so a generated `"   "` is not taken for valid.
pub fn trimmed_length_pattern(min: usize, max: usize) -> String {
    let space = format!("[{WHITE_SPACE}]*");
    let text = format!("[^{WHITE_SPACE}]");
    let middle = if min <= 1 {
        format!(r"([\s\S]{{0,{}}}{text})?", max.saturating_sub(2))
    } else {
        format!(r"[\s\S]{{{},{}}}{text}", min - 2, max.saturating_sub(2))
    };
    format!("^{space}{text}{middle}{space}$")
}

/// A string schema for a value the server trims before checking its length (see
/// [`trimmed_length_pattern`]), for a field's `#[schema(schema_with = …)]`.
pub fn trimmed_string(min: usize, max: usize, description: &str) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(min))
        .pattern(Some(trimmed_length_pattern(min, max)))
        .description(Some(description))
        .build()
}

/// A pattern matching the strings that are not blank once trimmed.
pub fn not_blank_pattern() -> String {
    format!("[^{WHITE_SPACE}]")
}

/// A string schema for a value that must not be blank once trimmed (see [`not_blank_pattern`]),
/// for a field's `#[schema(schema_with = …)]`.
pub fn not_blank_string(description: &str) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .pattern(Some(not_blank_pattern()))
        .description(Some(description))
        .build()
}

/// The route that serves a service's document as JSON, for its
/// `/api/<prefix>/openapi.json`:
///
/// ```ignore
/// router.route("/api/tickets/openapi.json", common::openapi::serve(openapi))
/// ```
pub fn serve<S: Clone + Send + Sync + 'static>(document: fn() -> OpenApi) -> MethodRouter<S> {
    get(move || async move { Json(document()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::Modify as _;

    #[test]
    fn a_trimmed_length_pattern_matches_what_trim_then_count_accepts() {
        let spaces = [" ", "\t", "\n", "\u{85}", "\u{a0}", "\u{2000}", "\u{3000}"];
        // Not white space to `str::trim`, though some regex engines say otherwise.
        let others = ["x", "é", "\u{1c}", "\u{200b}", "\u{feff}", "🎫"];
        for (min, max) in [(1, 200), (4, 128), (2, 3)] {
            let pattern = regex::Regex::new(&trimmed_length_pattern(min, max)).unwrap();
            for length in 0..=max + 1 {
                for (pad, fill) in spaces.iter().zip(others.iter().cycle()) {
                    let inner: String = (0..length)
                        .map(|i| {
                            if i % 3 == 1 {
                                spaces[i % spaces.len()]
                            } else {
                                *fill
                            }
                        })
                        .collect();
                    for value in [inner.clone(), format!("{pad}{inner}{pad}{pad}")] {
                        let trimmed = value.trim().chars().count();
                        assert_eq!(
                            pattern.is_match(&value),
                            (min..=max).contains(&trimmed),
                            "{value:?} ({trimmed} once trimmed) against {min}..={max}"
                        );
                    }
                }
            }
        }
        let not_blank = regex::Regex::new(&not_blank_pattern()).unwrap();
        for value in ["x", " x ", "\u{1c}"] {
            assert!(not_blank.is_match(value), "{value:?}");
        }
        for value in ["", "   ", "\t\u{3000}\n"] {
            assert!(!not_blank.is_match(value), "{value:?}");
        }
    }

    #[test]
    fn the_shared_parts_are_added_to_an_empty_document() {
        let mut doc = OpenApi::default();
        Shared.modify(&mut doc);
        let json = serde_json::to_value(&doc).unwrap_or_default();
        assert_eq!(json["info"]["description"], CONVENTIONS);
        let components = &json["components"];
        assert_eq!(
            components["securitySchemes"]["session"],
            serde_json::json!({
                "type": "apiKey",
                "in": "cookie",
                "name": "session",
                "description": components["securitySchemes"]["session"]["description"],
            })
        );
        assert_eq!(
            components["schemas"]["ErrorBody"]["properties"]["errors"]["items"]["$ref"],
            "#/components/schemas/FieldError"
        );
        assert_eq!(
            components["schemas"]["FieldError"]["required"],
            serde_json::json!(["message"])
        );
    }
}
