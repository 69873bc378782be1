//! What every request gets regardless of route: the error shape for bad bodies, unknown paths
//! and methods, the body limit, health endpoints, security headers, and no CORS.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use crate::helpers::spawn_app;
use test_support::TestApp;

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
    response.assert_error(StatusCode::NOT_FOUND, "Not found");

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
    let first = app.get("/api/users/currentuser", None).await;
    let second = app.get("/api/users/currentuser", None).await;
    let id = |r: &test_support::TestResponse| {
        r.headers
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(!id(&first).is_empty());
    assert_ne!(id(&first), id(&second), "request ids repeat");
    // A caller's own id is kept.
    let mine = TestApp::read(
        app.http()
            .get(format!("{}/api/users/currentuser", app.address))
            .header("x-request-id", "caller-chosen-42"),
    )
    .await;
    assert_eq!(id(&mine), "caller-chosen-42");
}

#[tokio::test]
async fn every_response_carries_security_headers_and_no_cors() {
    let app = spawn_app().await;
    let ok = app.get("/api/users/currentuser", None).await;
    let not_found = app.get("/api/users/nope", None).await;
    let bad = post_raw(&app, Some("application/json"), "{").await;
    for response in [&ok, &not_found, &bad] {
        let headers = &response.headers;
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(
            headers["referrer-policy"],
            "strict-origin-when-cross-origin"
        );
        assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    // CORS is closed by default: a cross-origin request gets no Access-Control-* header and
    // a preflight is not answered.
    let cross_origin = app
        .http()
        .get(format!("{}/api/users/currentuser", app.address))
        .header("origin", "https://evil.example");
    let response = test_support::TestApp::read(cross_origin).await;
    let preflight = app
        .http()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/users/signin", app.address),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST");
    let preflight = test_support::TestApp::read(preflight).await;
    assert_eq!(preflight.status, StatusCode::METHOD_NOT_ALLOWED);
    for response in [&response, &preflight] {
        assert!(
            response
                .headers
                .keys()
                .all(|name| !name.as_str().starts_with("access-control-")),
            "{:?}",
            response.headers
        );
    }
}
