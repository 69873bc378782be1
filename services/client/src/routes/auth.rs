//! Sign up, sign in and sign out: forms over the auth API, passing its session cookie on.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{safe_next, viewer};
use crate::api::{CallError, Caller, Reply};
use crate::pages::{AuthPage, FormErrors, Layout, PageError, SignOutPage, render};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NextQuery {
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CredentialsForm {
    email: String,
    password: String,
    next: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SignUp,
    SignIn,
}

fn page(kind: Kind, caller: &Caller, next: &str, email: String, errors: FormErrors) -> AuthPage {
    let switch_query = if next.is_empty() || next == "/" {
        String::new()
    } else {
        format!("?next={}", crate::api::encode_query(next))
    };
    match kind {
        Kind::SignUp => AuthPage {
            layout: Layout::new("Sign up", None, caller).section("signup"),
            heading: "Create your account",
            lede: "Sell tickets you can't use and buy the ones you want.",
            action: "/auth/signup",
            submit: "Sign up",
            password_autocomplete: "new-password",
            password_hint: "Between 4 and 128 characters.",
            switch_text: "Already have an account?",
            switch_href: format!("/auth/signin{switch_query}"),
            switch_link: "Sign in",
            next: next.to_owned(),
            email,
            errors,
        },
        Kind::SignIn => AuthPage {
            layout: Layout::new("Sign in", None, caller).section("signin"),
            heading: "Welcome back",
            lede: "Sign in to buy, sell and see your orders.",
            action: "/auth/signin",
            submit: "Sign in",
            password_autocomplete: "current-password",
            password_hint: "",
            switch_text: "New here?",
            switch_href: format!("/auth/signup{switch_query}"),
            switch_link: "Create an account",
            next: next.to_owned(),
            email,
            errors,
        },
    }
}

async fn form(kind: Kind, state: &AppState, caller: &Caller, next: &str) -> Response {
    if viewer(state, caller).await.is_some() {
        return Redirect::to(safe_next(next)).into_response();
    }
    render(
        StatusCode::OK,
        &page(kind, caller, next, String::new(), FormErrors::default()),
    )
}

pub(crate) async fn signup_form(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<NextQuery>,
) -> Response {
    form(Kind::SignUp, &state, &caller, &query.next).await
}

pub(crate) async fn signin_form(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<NextQuery>,
) -> Response {
    form(Kind::SignIn, &state, &caller, &query.next).await
}

async fn submit(
    kind: Kind,
    state: &AppState,
    caller: &Caller,
    form: Result<Form<CredentialsForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|_| PageError::BadForm)?;
    let result = match kind {
        Kind::SignUp => state.api.signup(caller, &form.email, &form.password).await,
        Kind::SignIn => state.api.signin(caller, &form.email, &form.password).await,
    };
    match result {
        Ok(reply) => Ok(redirect_with_cookies(reply, safe_next(&form.next))),
        Err(CallError::Rejected { status, errors }) if status.is_client_error() => {
            let errors = FormErrors::from_api(errors, &["email", "password"]);
            let errors = if errors.general.is_empty() && errors.first_field().is_none() {
                FormErrors::general("That didn't work. Please try again.")
            } else {
                errors
            };
            Ok(render(
                StatusCode::BAD_REQUEST,
                &page(kind, caller, &form.next, form.email, errors),
            ))
        }
        Err(other) => Err(PageError::from_call(other, caller, "/")),
    }
}

/// Redirects to `to`, passing on the session cookie the auth API set or cleared.
fn redirect_with_cookies<T>(reply: Reply<T>, to: &str) -> Response {
    let cookies: Vec<_> = reply
        .set_cookies
        .into_iter()
        .map(|value| (SET_COOKIE, value))
        .collect();
    (AppendHeaders(cookies), Redirect::to(to)).into_response()
}

pub(crate) async fn signup(
    State(state): State<AppState>,
    caller: Caller,
    form: Result<Form<CredentialsForm>, FormRejection>,
) -> Result<Response, PageError> {
    submit(Kind::SignUp, &state, &caller, form).await
}

pub(crate) async fn signin(
    State(state): State<AppState>,
    caller: Caller,
    form: Result<Form<CredentialsForm>, FormRejection>,
) -> Result<Response, PageError> {
    submit(Kind::SignIn, &state, &caller, form).await
}

/// `GET /auth/signout`, the link in the header: signs out on a navigation from this site's
/// own pages, like the original; anything else (an `<img>` or a link on another site, a
/// browser that does not say) gets a page with a sign-out button instead.
pub(crate) async fn signout_link(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    let same_origin = headers
        .get("sec-fetch-site")
        .is_some_and(|site| site == "same-origin");
    if same_origin {
        return signout(State(state), caller).await;
    }
    let viewer = viewer(&state, &caller).await;
    Ok(render(
        StatusCode::OK,
        &SignOutPage {
            layout: Layout::new("Sign out", viewer, &caller),
        },
    ))
}

/// Signs out and goes home.
pub(crate) async fn signout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, PageError> {
    let reply = state
        .api
        .signout(&caller)
        .await
        .map_err(|error| PageError::from_call(error, &caller, "/"))?;
    Ok(redirect_with_cookies(reply, "/"))
}
