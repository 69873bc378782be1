//! Signup and signin are rate limited per client address: 429 in the error shape with
//! `Retry-After`, while the other routes and other clients are unaffected.

use reqwest::StatusCode;
use test_support::{TestApp, TestResponse};

use crate::helpers::{body, spawn_with};

/// Two requests at once, then one a minute (the slowest refill the setting allows, so that a
/// test slowed down by a busy machine gets no new request between its burst and its 429),
/// per client address; behind `trusted_proxies` when given (the test connects from
/// 127.0.0.1, so that address is the proxy).
async fn spawn_limited(trusted_proxies: Option<&str>) -> TestApp {
    spawn_with(|env| {
        let env = env
            .with("AUTH_RATE_LIMIT_PER_MINUTE", "1")
            .with("AUTH_RATE_LIMIT_BURST", "2");
        match trusted_proxies {
            Some(proxies) => env.with("TRUSTED_PROXIES", proxies),
            None => env,
        }
    })
    .await
}

async fn signin_from(app: &TestApp, forwarded_for: Option<&str>) -> TestResponse {
    signin_as(app, "nobody@test.com", "password", forwarded_for).await
}

async fn signin_as(
    app: &TestApp,
    email: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> TestResponse {
    let mut request = app
        .http()
        .post(format!("{}/api/users/signin", app.address))
        .json(&body(email, password));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    TestApp::read(request).await
}

fn assert_throttled(response: &TestResponse) {
    assert_eq!(
        response.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        response.body
    );
    response.assert_error_shape();
    assert_eq!(
        response.error_messages(),
        ["Too many requests, try again later"]
    );
    let retry_after: u64 = response.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test]
async fn signin_and_signup_share_a_burst_then_get_429_with_retry_after() {
    let app = spawn_limited(None).await;
    let created = app
        .post("/api/users/signup", None, body("me@test.com", "password"))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let wrong = signin_from(&app, None).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);

    assert_throttled(&signin_from(&app, None).await);
    // Checked before the body: even a valid signup is refused, and nothing is created.
    let signup = app
        .post(
            "/api/users/signup",
            None,
            body("other@test.com", "password"),
        )
        .await;
    assert_throttled(&signup);
    let users = app
        .context
        .database("auth")
        .await
        .collection::<mongodb::bson::Document>("users");
    let count = users.count_documents(mongodb::bson::doc! {}).await.unwrap();
    assert_eq!(count, 1, "the refused signup created a user");
    // Invalid bodies count too, so probing validation is throttled as well.
    let invalid = app
        .post("/api/users/signup", None, serde_json::json!({}))
        .await;
    assert_throttled(&invalid);

    // Sessions keep working: only the password-checking routes are limited.
    let me = app
        .get(
            "/api/users/currentuser",
            Some(&created.session_cookie().unwrap()),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["currentUser"]["email"], "me@test.com");
    let out = app
        .post("/api/users/signout", None, serde_json::json!({}))
        .await;
    assert_eq!(out.status, StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_trusted() {
    let app = spawn_limited(None).await;
    signin_from(&app, Some("203.0.113.1")).await;
    signin_from(&app, Some("203.0.113.2")).await;
    // A client cannot get a fresh bucket by making up an address.
    assert_throttled(&signin_from(&app, Some("203.0.113.3")).await);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let app = spawn_limited(Some("127.0.0.1, 10.0.0.0/8")).await;
    for _ in 0..2 {
        let response = signin_from(&app, Some("203.0.113.1, 10.0.0.1")).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
    }
    assert_throttled(&signin_from(&app, Some("203.0.113.1, 10.0.0.2")).await);
    let other = signin_from(&app, Some("198.51.100.9, 10.0.0.1")).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_hop_a_caller_writes_itself_cannot_pick_its_bucket() {
    // A proxy that appends: whatever the caller put on the left stays, and the proxy adds the
    // address it saw. The limiter reads that one.
    let app = spawn_limited(Some("127.0.0.1")).await;
    for made_up in ["1.1.1.1", "2.2.2.2"] {
        let response = signin_from(&app, Some(&format!("{made_up}, 203.0.113.7"))).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
    }
    assert_throttled(&signin_from(&app, Some("3.3.3.3, 203.0.113.7")).await);
}

#[tokio::test]
async fn an_account_guessed_at_from_many_addresses_is_refused_even_the_right_password() {
    let app = spawn_with(|env| {
        env.with("TRUSTED_PROXIES", "127.0.0.1")
            .with("AUTH_FAILURES_BURST", "3")
            .with("AUTH_FAILURES_PER_MINUTE", "2")
    })
    .await;
    app.signup("victim@test.com", "right password").await;
    app.signup("bystander@test.com", "right password").await;
    // Every guess from an address of its own: the per-address limit never applies.
    for n in 0..3 {
        let guess = signin_as(
            &app,
            "victim@test.com",
            "wrong",
            Some(&format!("203.0.113.{n}")),
        )
        .await;
        assert_eq!(guess.status, StatusCode::BAD_REQUEST, "{}", guess.body);
    }
    let refused = signin_as(
        &app,
        "victim@test.com",
        "right password",
        Some("198.51.100.1"),
    )
    .await;
    assert_throttled(&refused);
    assert!(refused.session_cookie().is_none());
    // Another account, from an address that already guessed, is unaffected.
    let other = signin_as(
        &app,
        "bystander@test.com",
        "right password",
        Some("203.0.113.0"),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
}
