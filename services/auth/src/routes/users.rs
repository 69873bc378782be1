//! `/api/users/*`: signup, signin, signout, currentuser — compatible with the Node original.
//! Signup and signin are rate limited per client address (429 with `Retry-After`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::rate_limit::WithinRateLimit;
use common::{ApiError, MaybeCurrentUser, Result, Sessions, ValidatedJson};
use serde::{Deserialize, Serialize};
use serde_json::json;
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

#[derive(Debug, Deserialize, Validate)]
struct SignupBody {
    #[serde(deserialize_with = "domain::canonical_email")]
    #[validate(email(message = "Email must be valid"))]
    email: String,
    #[validate(custom(
        function = "domain::password_length",
        message = "Password must be between 4 and 20 characters"
    ))]
    password: String,
}

#[derive(Debug, Deserialize, Validate)]
struct SigninBody {
    #[serde(deserialize_with = "domain::canonical_email")]
    #[validate(email(message = "Email must be valid"))]
    email: String,
    #[validate(custom(function = "domain::not_blank", message = "You must supply a password"))]
    password: String,
}

/// The public view of a user.
#[derive(Debug, Serialize)]
struct UserJson {
    id: String,
    email: String,
}

impl From<&UserDoc> for UserJson {
    fn from(user: &UserDoc) -> Self {
        Self {
            id: user.id.to_hex(),
            email: user.email.clone(),
        }
    }
}

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

#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn sign_in(
    _: WithinRateLimit,
    State(state): State<AppState>,
    ValidatedJson(body): ValidatedJson<SigninBody>,
) -> Result<(HeaderMap, Json<UserJson>)> {
    let user = state.users.find_by_email(&body.email).await?;
    let stored = user.as_ref().map(|u| u.password.clone());
    // One message for both failures, so the answer does not tell which accounts exist.
    let user = match (state.hasher.verify(body.password, stored).await?, user) {
        (true, Some(user)) => user,
        _ => return Err(ApiError::bad_request("Invalid credentials")),
    };
    let headers = session_headers(&state.sessions, &user)?;
    Ok((headers, Json(UserJson::from(&user))))
}

async fn sign_out(State(sessions): State<Sessions>) -> (HeaderMap, Json<serde_json::Value>) {
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, sessions.clear_cookie());
    (headers, Json(json!({})))
}

async fn current_user(MaybeCurrentUser(claims): MaybeCurrentUser) -> Json<serde_json::Value> {
    let current = claims.map(|c| json!({"id": c.id, "email": c.email, "iat": c.iat}));
    Json(json!({ "currentUser": current }))
}

fn session_headers(sessions: &Sessions, user: &UserDoc) -> Result<HeaderMap> {
    let (token, _claims) = sessions.issue(&user.id.to_hex(), &user.email)?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, sessions.cookie(&token));
    Ok(headers)
}
