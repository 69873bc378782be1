//! POST /api/users/signout

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn signout_clears_the_cookie() {
    let app = spawn_app().await;
    let user = app.signup("me@test.com", "password").await;
    let response = app
        .post("/api/users/signout", Some(&user.cookie), json!({}))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, json!({}));
    let cookie = response.session_cookie().expect("a clearing cookie");
    assert!(cookie.starts_with("session=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
}

#[tokio::test]
async fn signout_works_without_a_body_or_a_session() {
    let app = spawn_app().await;
    let response = app
        .request(reqwest::Method::POST, "/api/users/signout", None, None)
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.session_cookie().is_some());
}
