//! What every request gets regardless of route: the error shape for bad bodies, unknown paths
//! and methods, the body limit, and health endpoints.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use crate::helpers::spawn_app;

async fn post_raw(
    app: &test_support::TestApp,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> test_support::TestResponse {
    let mut request = app
        .http()
        .post(format!("{}/api/users/signup", app.address))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    test_support::TestApp::read(request).await
}

#[tokio::test]
async fn malformed_json_is_a_400_in_the_error_shape() {
    let app = spawn_app().await;
    for body in [
        "{",
        "",
        "nope",
        "{\"email\":",
        "[]",
        "42",
        "{\"email\":\"a@b.c\",\"password\":\"pass\"} x",
    ] {
        let response = post_raw(&app, Some("application/json"), body).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body:?}");
        response.assert_error_shape();
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400() {
    let app = spawn_app().await;
    let json = r#"{"email":"a@b.com","password":"password"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let response = post_raw(&app, content_type, json).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{content_type:?}");
        response.assert_error_shape();
    }
    let response = post_raw(&app, Some("application/json; charset=utf-8"), json).await;
    assert_eq!(response.status, StatusCode::CREATED);
}

#[tokio::test]
async fn an_oversized_body_is_a_413() {
    let app = spawn_app().await;
    let body = format!(
        r#"{{"email":"a@b.com","password":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let response = post_raw(&app, Some("application/json"), body).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    response.assert_error_shape();
}

#[tokio::test]
async fn invalid_utf8_is_a_400() {
    let app = spawn_app().await;
    let response = post_raw(
        &app,
        Some("application/json"),
        vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    response.assert_error_shape();
}

#[tokio::test]
async fn unknown_api_paths_are_404_and_wrong_methods_405_in_the_error_shape() {
    let app = spawn_app().await;
    let response = app.get("/api/users/nope", None).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.error_messages(), ["Not found"]);

    let response = app.get("/api/users/signup", None).await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    response.assert_error_shape();
}

#[tokio::test]
async fn health_and_readiness_answer_with_mongodb_up() {
    let app = spawn_app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["auth-mongo"], "ok");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.get("/api/users/currentuser", None).await;
    let id = response.headers.get("x-request-id").expect("x-request-id");
    assert!(!id.is_empty());
}
