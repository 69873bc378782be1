//! The payments service's OpenAPI document: served at its URL, well formed, and in agreement
//! with the router.

use test_support::openapi::ServiceDocument;

use crate::payments::spawn_app;

const DOCUMENT: ServiceDocument = ServiceDocument {
    url: "/api/payments/openapi.json",
    operations: &["POST /api/payments"],
    routes_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes"),
    undocumented: &[],
};

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    let doc = DOCUMENT.assert_served_by(&app, &payments::openapi()).await;
    let pay = &doc["paths"]["/api/payments"]["post"];
    assert_eq!(pay["security"], serde_json::json!([{"session": []}]));
    for status in ["201", "400", "401", "404", "413", "503"] {
        assert!(pay["responses"][status].is_object(), "{status}");
    }
}
