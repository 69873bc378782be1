//! POST /api/users/signup

use futures::future::join_all;
use mongodb::bson::{Document, doc};
use reqwest::StatusCode;
use serde_json::json;
use test_support::assert_one_created;

use crate::helpers::{body, spawn_app};

#[tokio::test]
async fn signup_returns_201_with_the_user_and_a_session_cookie() {
    let app = spawn_app().await;
    let response = app
        .post("/api/users/signup", None, body("test@test.com", "password"))
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.body["email"], "test@test.com");
    let id = response.body["id"].as_str().unwrap();
    assert_eq!(id.len(), 24, "an ObjectId hex: {id}");
    assert_eq!(
        response.body.as_object().unwrap().len(),
        2,
        "only id and email: {}",
        response.body
    );
    let cookie = response.session_cookie().expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Secure"),
        "COOKIE_SECURE=false drops Secure: {cookie}"
    );
}

#[tokio::test]
async fn the_cookie_is_secure_unless_configured_off() {
    // Secure cookies need a key of one's own: the tests' key is published.
    let app = crate::helpers::spawn_with(|env| {
        env.with("COOKIE_SECURE", "")
            .with("JWT_KEY", "a-key-only-this-test-uses-0123456789abcdef")
    })
    .await;
    let response = app
        .post(
            "/api/users/signup",
            None,
            body("secure@test.com", "password"),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert!(response.session_cookie().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn the_email_is_trimmed_and_lower_cased_and_the_password_hashed() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/users/signup",
            None,
            body("  Mixed.Case@Test.COM ", "password"),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.body["email"], "mixed.case@test.com");

    let users = app
        .context
        .database("auth")
        .await
        .collection::<Document>("users");
    let stored = users.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(stored.get_str("email").unwrap(), "mixed.case@test.com");
    let hash = stored.get_str("password").unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
}

#[tokio::test]
async fn an_invalid_email_is_refused_with_its_field() {
    let app = spawn_app().await;
    for email in ["", "not-an-email", "a@", "@b.com"] {
        let response = app
            .post("/api/users/signup", None, body(email, "password"))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{email:?}");
        response.assert_error_shape();
        assert_eq!(response.body["errors"][0]["field"], "email");
        assert_eq!(response.body["errors"][0]["message"], "Email must be valid");
    }
}

#[tokio::test]
async fn a_password_outside_4_to_20_characters_after_trimming_is_refused() {
    let app = spawn_app().await;
    for password in ["", "abc", "   abc   ", &"x".repeat(129)] {
        let response = app
            .post("/api/users/signup", None, body("a@b.com", password))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{password:?}");
        assert_eq!(response.body["errors"][0]["field"], "password");
        assert_eq!(
            response.body["errors"][0]["message"],
            "Password must be between 4 and 128 characters"
        );
    }
    let response = app
        .post("/api/users/signup", None, body("a@b.com", &"x".repeat(20)))
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn both_invalid_fields_are_reported() {
    let app = spawn_app().await;
    let response = app.post("/api/users/signup", None, body("nope", "x")).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    let fields: Vec<_> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["email", "password"]);
}

#[tokio::test]
async fn missing_fields_and_wrong_types_name_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"password": "password"}), "email"),
        (json!({"email": "a@b.com"}), "password"),
        (json!({"email": 42, "password": "password"}), "email"),
        (json!({"email": "a@b.com", "password": ["x"]}), "password"),
        (json!({"email": null, "password": "password"}), "email"),
    ];
    for (input, field) in cases {
        let response = app.post("/api/users/signup", None, input.clone()).await;
        response
            .assert_bad_field(field, &input)
            .assert_error_shape();
    }
}

#[tokio::test]
async fn a_second_signup_with_the_same_email_in_any_case_is_refused() {
    let app = spawn_app().await;
    app.signup("dup@test.com", "password").await;
    let response = app
        .post(
            "/api/users/signup",
            None,
            body(" DUP@test.com", "other-password"),
        )
        .await;
    response.assert_error(StatusCode::BAD_REQUEST, "Email in use");
    assert!(response.session_cookie().is_none());
}

#[tokio::test]
async fn twenty_concurrent_signups_of_one_email_give_exactly_one_201() {
    let app = spawn_app().await;
    let attempts =
        (0..20).map(|_| app.post("/api/users/signup", None, body("race@test.com", "password")));
    let responses = join_all(attempts).await;
    for response in assert_one_created(&responses) {
        response.assert_error(StatusCode::BAD_REQUEST, "Email in use");
    }
    let users = app
        .context
        .database("auth")
        .await
        .collection::<Document>("users");
    assert_eq!(users.count_documents(doc! {}).await.unwrap(), 1);
}
