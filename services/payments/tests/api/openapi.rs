//! The payments service's OpenAPI document: served at its URL, well formed, and in agreement
//! with the router.

use test_support::openapi;

use crate::payments::spawn_app;

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    let doc = openapi::assert_service_document(
        &app,
        "/api/payments/openapi.json",
        &payments::openapi(),
        &["POST /api/payments"],
        &[
            include_str!("../../src/routes/payments.rs"),
            include_str!("../../src/routes/mod.rs"),
        ],
        &[],
    )
    .await;
    let pay = &doc["paths"]["/api/payments"]["post"];
    assert_eq!(pay["security"], serde_json::json!([{"session": []}]));
    for status in ["201", "400", "401", "404", "413", "503"] {
        assert!(pay["responses"][status].is_object(), "{status}");
    }
}
