//! The auth service's OpenAPI document, and the Swagger UI it serves over every service's
//! document.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use test_support::openapi::ServiceDocument;

use crate::helpers::spawn_app;

const DOCUMENT: ServiceDocument = ServiceDocument {
    url: "/api/users/openapi.json",
    operations: &[
        "POST /api/users/signup",
        "POST /api/users/signin",
        "POST /api/users/signout",
        "GET /api/users/currentuser",
    ],
    routes_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes"),
    // Swagger UI's pages, not operations.
    undocumented: &["/api/docs", "/api/docs/", "/api/docs/{*file}"],
};

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    DOCUMENT.assert_served_by(&app, &auth::openapi()).await;
}

#[test]
fn sessions_rate_limits_and_cookies_are_documented() {
    let doc = serde_json::to_value(auth::openapi()).unwrap();
    let paths = &doc["paths"];
    for path in ["/api/users/signup", "/api/users/signin"] {
        let responses = &paths[path]["post"]["responses"];
        assert!(
            responses["429"]["headers"]["Retry-After"].is_object(),
            "{path}"
        );
        let success = if path.ends_with("signup") {
            "201"
        } else {
            "200"
        };
        assert!(
            responses[success]["headers"]["Set-Cookie"].is_object(),
            "{path}"
        );
    }
    // Signed in or not, currentuser answers: the cookie is optional.
    assert_eq!(
        paths["/api/users/currentuser"]["get"]["security"],
        serde_json::json!([{}, {"session": []}])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["session"]["in"],
        "cookie"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_from_this_origin_under_the_strict_policy() {
    let app = spawn_app().await;
    let http = app.http();
    let get = |path: &str| http.get(format!("{}{path}", app.address)).send();

    let redirect = get("/api/docs").await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()[LOCATION], "/api/docs/");

    let page = get("/api/docs/").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        page.headers()[CONTENT_SECURITY_POLICY],
        common::security::CONTENT_SECURITY_POLICY
    );
    let html = page.text().await.unwrap();
    // Every script is a file of this origin: nothing inline for the policy to refuse.
    for script in html.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap();
        assert!(tag.contains("src=\"./"), "inline or foreign script: {tag}");
    }
    assert!(!html.contains("<style"), "inline style in {html}");
    assert!(!html.contains("http"), "a file from elsewhere in {html}");

    let initializer = get("/api/docs/swagger-initializer.js").await.unwrap();
    assert_eq!(initializer.status(), StatusCode::OK);
    let initializer = initializer.text().await.unwrap();
    for url in [
        "/api/users/openapi.json",
        "/api/tickets/openapi.json",
        "/api/orders/openapi.json",
        "/api/payments/openapi.json",
    ] {
        assert!(initializer.contains(url), "{url} missing in {initializer}");
    }
    assert!(
        initializer.contains(r#""validatorUrl": "none""#),
        "{initializer}"
    );

    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
    ] {
        let response = get(&format!("/api/docs/{asset}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 10_000, "{asset}");
    }
    // A name that is not even text once decoded is just as missing.
    for path in ["/api/docs/no-such-file.js", "/api/docs/%80"] {
        let missing = app.get(path, None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        missing.assert_error_shape();
    }
}
