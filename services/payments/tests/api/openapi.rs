//! The payments service's OpenAPI document: served at its URL, well formed, and in agreement
//! with the router.

use std::collections::BTreeSet;

use test_support::openapi;

use crate::payments::spawn_app;

const DOCUMENT: &str = "/api/payments/openapi.json";

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    let doc = openapi::assert_served(&app, DOCUMENT).await;
    assert_eq!(
        openapi::operations(&doc),
        BTreeSet::from(["POST /api/payments".to_owned()])
    );
    let mut routed = openapi::routed_paths(include_str!("../../src/routes/payments.rs"));
    routed.extend(openapi::routed_paths(include_str!(
        "../../src/routes/mod.rs"
    )));
    routed.remove(DOCUMENT);
    assert_eq!(
        routed,
        openapi::documented_paths(&doc),
        "every route is documented"
    );
    assert_eq!(doc, serde_json::to_value(payments::openapi()).unwrap());
    let pay = &doc["paths"]["/api/payments"]["post"];
    assert_eq!(pay["security"], serde_json::json!([{"session": []}]));
    for status in ["201", "400", "401", "404", "413", "503"] {
        assert!(pay["responses"][status].is_object(), "{status}");
    }
}
