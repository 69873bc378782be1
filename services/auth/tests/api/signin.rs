//! POST /api/users/signin

use reqwest::StatusCode;

use crate::helpers::{body, spawn_app};

#[tokio::test]
async fn signin_with_the_right_password_returns_the_user_and_a_cookie() {
    let app = spawn_app().await;
    let user = app.signup("me@test.com", "password").await;
    let response = app
        .post("/api/users/signin", None, body("ME@test.com ", "password"))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["id"], user.id.as_str());
    assert_eq!(response.body["email"], "me@test.com");
    assert!(response.session_cookie().unwrap().contains("HttpOnly"));
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    app.signup("me@test.com", "password").await;
    let unknown = app
        .post(
            "/api/users/signin",
            None,
            body("nobody@test.com", "password"),
        )
        .await;
    let wrong = app
        .post("/api/users/signin", None, body("me@test.com", "passwort"))
        .await;
    for response in [&unknown, &wrong] {
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert!(response.session_cookie().is_none());
    }
    assert_eq!(unknown.body, wrong.body);
    assert_eq!(unknown.error_messages(), ["Invalid credentials"]);
}

#[tokio::test]
async fn the_password_is_compared_exactly_as_typed() {
    let app = spawn_app().await;
    app.signup("me@test.com", " password ").await;
    let trimmed = app
        .post("/api/users/signin", None, body("me@test.com", "password"))
        .await;
    assert_eq!(trimmed.status, StatusCode::BAD_REQUEST);
    let exact = app
        .post("/api/users/signin", None, body("me@test.com", " password "))
        .await;
    assert_eq!(exact.status, StatusCode::OK);
}

#[tokio::test]
async fn signin_validates_its_body() {
    let app = spawn_app().await;
    let response = app
        .post("/api/users/signin", None, body("not-an-email", ""))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    response.assert_error_shape();
    assert_eq!(response.body["errors"][0]["field"], "email");
    assert_eq!(response.body["errors"][1]["field"], "password");
    assert_eq!(
        response.body["errors"][1]["message"],
        "You must supply a password"
    );
}
