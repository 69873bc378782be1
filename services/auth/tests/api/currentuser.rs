//! GET /api/users/currentuser, and every way a session cookie can be bad.

use std::time::{SystemTime, UNIX_EPOCH};

use common::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn currentuser_reads_the_session() {
    let app = spawn_app().await;
    let user = app.signup("me@test.com", "password").await;
    let response = app.get("/api/users/currentuser", Some(&user.cookie)).await;
    assert_eq!(response.status, StatusCode::OK);
    let current = &response.body["currentUser"];
    assert_eq!(current["id"], user.id.as_str());
    assert_eq!(current["email"], "me@test.com");
    let iat = current["iat"].as_u64().unwrap();
    assert!(iat <= now() && iat + 60 > now(), "iat {iat}");
    assert_eq!(current.as_object().unwrap().len(), 3, "{current}");
}

#[tokio::test]
async fn without_a_cookie_there_is_no_current_user() {
    let app = spawn_app().await;
    let response = app.get("/api/users/currentuser", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, json!({"currentUser": null}));
}

#[tokio::test]
async fn bad_session_cookies_read_as_signed_out_never_as_errors() {
    let app = spawn_app().await;
    let user = app.signup("me@test.com", "password").await;
    let token = user.cookie.trim_start_matches("session=").to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    let claims = |iat: u64, exp: u64| Claims {
        id: user.id.clone(),
        email: user.email.clone(),
        iat,
        exp,
    };
    let expired = test_support::sessions()
        .sign(&claims(now() - 100, now() - 10))
        .unwrap();
    let other_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(now(), now() + 60),
        &EncodingKey::from_secret(b"someone else's key"),
    )
    .unwrap();
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(now(), now() + 60),
        &EncodingKey::from_secret(test_support::JWT_KEY.as_bytes()),
    )
    .unwrap();
    // {"alg":"none","typ":"JWT"} with the genuine payload and no signature.
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    let mut tampered_payload = parts[1].to_owned();
    let last = tampered_payload.pop().unwrap();
    tampered_payload.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);

    let cases = [
        ("expired", format!("session={expired}")),
        ("signed with another key", format!("session={other_key}")),
        ("HS512", format!("session={hs512}")),
        ("alg none", format!("session={alg_none}")),
        ("tampered payload", format!("session={tampered}")),
        ("not a jwt", "session=hello".to_owned()),
        ("empty", "session=".to_owned()),
        ("garbage", "session=%%%.@@@.!!!".to_owned()),
        ("huge", format!("session={}", "a".repeat(4000))),
    ];
    for (what, cookie) in cases {
        let response = app.get("/api/users/currentuser", Some(&cookie)).await;
        assert_eq!(response.status, StatusCode::OK, "{what}");
        assert_eq!(
            response.body["currentUser"],
            Value::Null,
            "{what} must read as signed out"
        );
    }

    // The genuine token still works, so the cases above failed for their own reason.
    let response = app.get("/api/users/currentuser", Some(&user.cookie)).await;
    assert_eq!(response.body["currentUser"]["id"], user.id.as_str());
}

#[tokio::test]
async fn the_session_cookie_is_found_among_others() {
    let app = spawn_app().await;
    let user = app.signup("me@test.com", "password").await;
    let cookie = format!("theme=dark; {}; lang=fr", user.cookie);
    let response = app.get("/api/users/currentuser", Some(&cookie)).await;
    assert_eq!(response.body["currentUser"]["email"], "me@test.com");
}
