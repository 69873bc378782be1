//! `/api/users/*`: signup, signin, signout, currentuser — compatible with the Node original.
//! Signup and signin are rate limited per client address (429 with `Retry-After`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::error::ErrorBody;
use common::openapi::WriteFailures;
use common::rate_limit::WithinRateLimit;
use common::{ApiError, MaybeCurrentUser, Result, Sessions, ValidatedJson};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::domain;
use crate::state::AppState;
use crate::store::UserDoc;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users/signup", post(sign_up))
        .route("/api/users/signin", post(sign_in))
        .route("/api/users/signout", post(sign_out))
        .route("/api/users/currentuser", get(current_user))
}

/// A new account's credentials.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[schema(as = Signup, example = json!({"email": "me@example.com", "password": "secret"}))]
struct SignupBody {
    /// Trimmed and lower-cased, then it must be a valid address not already in use.
    #[serde(deserialize_with = "domain::canonical_email")]
    #[validate(email(message = "Email must be valid"))]
    #[schema(format = Email)]
    email: String,
    /// 4 to 128 characters once surrounding spaces are ignored (a passphrase fits); hashed
    /// exactly as typed.
    #[validate(custom(
        function = "domain::password_length",
        message = "Password must be between 4 and 128 characters"
    ))]
    #[schema(schema_with = new_password_schema)]
    password: String,
}

fn new_password_schema() -> utoipa::openapi::Object {
    let mut schema = common::openapi::trimmed_string(
        4,
        domain::MAX_PASSWORD_CHARS,
        "4 to 128 characters once surrounding spaces are ignored (a passphrase fits); hashed \
         exactly as typed.",
    );
    schema.format = Some(utoipa::openapi::SchemaFormat::KnownFormat(
        utoipa::openapi::KnownFormat::Password,
    ));
    schema
}

/// The credentials of an existing account.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[schema(as = Signin, example = json!({"email": "me@example.com", "password": "secret"}))]
struct SigninBody {
    /// Trimmed and lower-cased before the lookup.
    #[serde(deserialize_with = "domain::canonical_email")]
    #[validate(email(message = "Email must be valid"))]
    #[schema(format = Email)]
    email: String,
    /// Anything but blank; compared exactly as typed.
    #[validate(custom(function = "domain::not_blank", message = "You must supply a password"))]
    #[schema(schema_with = password_schema)]
    password: String,
}

fn password_schema() -> utoipa::openapi::Object {
    let mut schema =
        common::openapi::not_blank_string("Anything but blank; compared exactly as typed.");
    schema.format = Some(utoipa::openapi::SchemaFormat::KnownFormat(
        utoipa::openapi::KnownFormat::Password,
    ));
    schema
}

/// The public view of a user: `{id, email}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
struct UserJson {
    /// The user's id (ObjectId hex).
    #[schema(example = "64b7f0c2a1e4d93f2c8b4500")]
    id: String,
    /// The email, trimmed and lower-cased.
    #[schema(example = "me@example.com")]
    email: String,
}

/// Who is signed in: `{"currentUser": {id, email, iat}}`, or `{"currentUser": null}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CurrentUser)]
struct CurrentUserJson {
    /// `null` when there is no valid session.
    #[schema(required = true)]
    current_user: Option<SessionUserJson>,
}

/// The signed-in user, as the session token says.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SessionUser)]
struct SessionUserJson {
    /// The user's id (ObjectId hex).
    #[schema(example = "64b7f0c2a1e4d93f2c8b4500")]
    id: String,
    /// The email, trimmed and lower-cased.
    #[schema(example = "me@example.com")]
    email: String,
    /// When the session was issued, in seconds since the Unix epoch.
    #[schema(example = 1_700_000_000)]
    iat: u64,
}

/// An empty object, `{}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Empty)]
struct EmptyJson {}

impl From<&UserDoc> for UserJson {
    fn from(user: &UserDoc) -> Self {
        Self {
            id: user.id.to_hex(),
            email: user.email.clone(),
        }
    }
}

/// Creates an account and signs it in.
#[utoipa::path(
    post,
    path = "/api/users/signup",
    tag = "users",
    request_body = SignupBody,
    responses(
        (status = 201, description = "Signed up and in", body = UserJson,
            headers(("Set-Cookie" = String, description = "`session=<jwt>; Path=/; HttpOnly; \
                SameSite=Lax; Max-Age=…` (and `Secure` unless configured off)"))),
        (status = 400, description = "`Email in use` (an account has this email, compared \
            trimmed and lower-cased), or a field is not valid: `Email must be valid` (field \
            `email`), `Password must be between 4 and 128 characters` (field `password`)",
            body = ErrorBody, examples(
            ("Email in use" = (value = json!({"errors": [{"message": "Email in use"}]}))),
            ("Email is not valid" = (value = json!({"errors": [{"message": "Email must be valid", "field": "email"}]}))),
            ("Password length" = (value = json!({"errors": [{"message": "Password must be between 4 and 128 characters", "field": "password"}]}))),
        )),
        WriteFailures,
    )
)]
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn sign_up(
    _: WithinRateLimit,
    State(state): State<AppState>,
    ValidatedJson(body): ValidatedJson<SignupBody>,
) -> Result<(StatusCode, HeaderMap, Json<UserJson>)> {
    let hash = state.hasher.hash(body.password).await?;
    let user = state.users.insert(&body.email, hash).await?;
    tracing::info!(user_id = %user.id, "signed up");
    let headers = session_headers(&state.sessions, &user)?;
    Ok((StatusCode::CREATED, headers, Json(UserJson::from(&user))))
}

/// Signs in with an email and password.
#[utoipa::path(
    post,
    path = "/api/users/signin",
    tag = "users",
    request_body = SigninBody,
    responses(
        (status = 200, description = "Signed in", body = UserJson,
            headers(("Set-Cookie" = String, description = "`session=<jwt>; Path=/; HttpOnly; \
                SameSite=Lax; Max-Age=…` (and `Secure` unless configured off)"))),
        (status = 400, description = "`Invalid credentials` (the same for an unknown email \
            and a wrong password), or a field is not valid: `Email must be valid` (field \
            `email`), `You must supply a password` (field `password`)", body = ErrorBody,
            examples(
            ("Invalid credentials" = (value = json!({"errors": [{"message": "Invalid credentials"}]}))),
            ("Email is not valid" = (value = json!({"errors": [{"message": "Email must be valid", "field": "email"}]}))),
            ("No password" = (value = json!({"errors": [{"message": "You must supply a password", "field": "password"}]}))),
        )),
        WriteFailures,
    )
)]
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn sign_in(
    _: WithinRateLimit,
    State(state): State<AppState>,
    ValidatedJson(body): ValidatedJson<SigninBody>,
) -> Result<(HeaderMap, Json<UserJson>)> {
    // Checked before the password: an account guessed at too often is refused whatever the
    // guess, so a right one is not told apart.
    if let Err(retry_after) = state.failures.admit(&body.email) {
        return Err(ApiError::TooManyRequests { retry_after });
    }
    let user = state.users.find_by_email(&body.email).await?;
    let stored = user.as_ref().map(|u| u.password.clone());
    // One message for both failures, so the answer does not tell which accounts exist.
    let user = match (state.hasher.verify(body.password, stored).await?, user) {
        (true, Some(user)) => user,
        _ => {
            state.failures.failed(&body.email);
            return Err(ApiError::bad_request("Invalid credentials"));
        }
    };
    let headers = session_headers(&state.sessions, &user)?;
    Ok((headers, Json(UserJson::from(&user))))
}

/// Signs out: clears the session cookie (signed in or not).
#[utoipa::path(
    post,
    path = "/api/users/signout",
    tag = "users",
    responses(
        (status = 200, description = "Signed out", body = EmptyJson,
            headers(("Set-Cookie" = String, description = "`session=; Path=/; Max-Age=0; …`: \
                the cookie, expired"))),
    )
)]
async fn sign_out(State(sessions): State<Sessions>) -> (HeaderMap, Json<EmptyJson>) {
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, sessions.clear_cookie());
    (headers, Json(EmptyJson {}))
}

/// Who is signed in, from the session cookie; never fails.
#[utoipa::path(
    get,
    path = "/api/users/currentuser",
    tag = "users",
    // The cookie is optional: without a valid one the answer is `{"currentUser": null}`.
    security((), ("session" = [])),
    responses(
        (status = 200, description = "The signed-in user, or `null`", body = CurrentUserJson),
    )
)]
async fn current_user(MaybeCurrentUser(claims): MaybeCurrentUser) -> Json<CurrentUserJson> {
    Json(CurrentUserJson {
        current_user: claims.map(|c| SessionUserJson {
            id: c.id,
            email: c.email,
            iat: c.iat,
        }),
    })
}

fn session_headers(sessions: &Sessions, user: &UserDoc) -> Result<HeaderMap> {
    let (token, _claims) = sessions.issue(&user.id.to_hex(), &user.email)?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, sessions.cookie(&token));
    Ok(headers)
}
