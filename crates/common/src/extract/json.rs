//! `ValidatedJson<T>`: a JSON body extractor whose every failure is a 400 (or 413) in the error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use crate::error::{ApiError, FieldError};

/// Extracts a JSON body, deserializes it into `T` and runs `T`'s `validator` rules.
///
/// Malformed JSON, a missing or wrong `Content-Type`, missing fields, wrong types and failed
/// rules all become 400 `{"errors":[{"message","field"}]}` naming the field where one is known;
/// a body over the server's limit becomes 413. Handlers therefore only see valid input.
///
/// ```ignore
/// async fn signup(ValidatedJson(body): ValidatedJson<SignupBody>) -> Result<Json<User>> { /* … */ }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidatedJson<T>(pub T);

impl<T, S> FromRequest<S> for ValidatedJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&req) {
            return Err(ApiError::bad_request(
                "Expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::bad_request("Could not read the request body")
            }
        })?;
        let value: T = parse(&bytes)?;
        value
            .validate()
            .map_err(|errors| ApiError::Validation(flatten(&errors)))?;
        Ok(Self(value))
    }
}

fn has_json_content_type(req: &Request) -> bool {
    let Some(content_type) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes `bytes`, turning serde's error into a field-level message.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Serde also fills a struct from an array; every body of this API is an object.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err(ApiError::bad_request("Expected a JSON object"));
        }
        _ => return Err(ApiError::bad_request("Malformed JSON body")),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(to_api_error)?;
    // Trailing garbage after a valid document is still malformed JSON.
    deserializer
        .end()
        .map_err(|_| ApiError::bad_request("Malformed JSON body"))?;
    Ok(value)
}

fn to_api_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = inner.to_string();
    // serde reports a missing field at its parent's path, with the name in backticks.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return ApiError::field(field.clone(), format!("{field} is required"));
    }
    match inner.classify() {
        serde_json::error::Category::Data if path != "." => {
            let detail = message.split(" at line ").next().unwrap_or(&message);
            ApiError::field(path.clone(), format!("{path} is invalid: {detail}"))
        }
        serde_json::error::Category::Data => ApiError::bad_request("Expected a JSON object"),
        _ => ApiError::bad_request("Malformed JSON body"),
    }
}

/// Turns nested validator errors into one entry per field, sorted for stable output.
fn flatten(errors: &ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    collect(errors, "", &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn collect(errors: &ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    for (field, kind) in errors.errors() {
        // validator reports Rust field names; clients know the camelCase wire names.
        let field = camel_case(field);
        let path = if prefix.is_empty() {
            field
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                // One message per field is what forms show; the first rule that failed wins.
                if let Some(first) = list.first() {
                    let message = first
                        .message
                        .as_ref()
                        .map_or_else(|| format!("{path} is invalid"), ToString::to_string);
                    out.push(FieldError::new(path.clone(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Validate)]
    struct Body {
        #[validate(length(min = 1, message = "Title is required"))]
        title: String,
        #[allow(dead_code)]
        price: f64,
    }

    fn fields(error: ApiError) -> Vec<(Option<String>, String)> {
        error
            .body()
            .errors
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn a_missing_field_is_named() {
        let error = parse::<Body>(br#"{"title":"x"}"#).err();
        let error = error.map(fields).unwrap_or_default();
        assert_eq!(
            error,
            vec![(Some("price".into()), "price is required".into())]
        );
    }

    #[test]
    fn a_wrong_type_is_named() {
        let error = parse::<Body>(br#"{"title":"x","price":"ten"}"#).err();
        let error = error.map(fields).unwrap_or_default();
        assert_eq!(error.len(), 1);
        assert_eq!(error[0].0.as_deref(), Some("price"));
    }

    #[test]
    fn malformed_json_is_a_plain_400() {
        for input in [&b"{"[..], b"", b"{\"title\":\"x\",\"price\":1} trailing"] {
            let error = parse::<Body>(input).err();
            assert!(matches!(error, Some(ApiError::BadRequest(_))), "{input:?}");
        }
    }

    #[test]
    fn a_non_object_is_refused() {
        assert!(matches!(
            parse::<Body>(b"[1,2]"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn field_names_are_reported_in_camel_case() {
        assert_eq!(camel_case("ticket_id"), "ticketId");
        assert_eq!(camel_case("title"), "title");
        assert_eq!(camel_case("stripe_token_id"), "stripeTokenId");
    }

    #[test]
    fn validator_messages_become_field_errors() {
        let body = Body {
            title: String::new(),
            price: 1.0,
        };
        let errors = body
            .validate()
            .err()
            .map(|e| flatten(&e))
            .unwrap_or_default();
        assert_eq!(errors, vec![FieldError::new("title", "Title is required")]);
    }
}
