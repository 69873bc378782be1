//! The orders service's OpenAPI document: served at its URL, well formed, and in agreement
//! with the router.

use std::collections::BTreeSet;

use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use test_support::{fake_user, openapi};

use crate::helpers::spawn_app;

const DOCUMENT: &str = "/api/orders/openapi.json";

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    let doc = openapi::assert_served(&app, DOCUMENT).await;
    assert_eq!(
        openapi::operations(&doc),
        BTreeSet::from(
            [
                "GET /api/orders",
                "POST /api/orders",
                "GET /api/orders/{id}",
                "DELETE /api/orders/{id}",
                "GET /api/orders/tickets/{id}",
            ]
            .map(String::from)
        )
    );
    let mut routed = openapi::routed_paths(include_str!("../../src/routes/orders.rs"));
    routed.extend(openapi::routed_paths(include_str!(
        "../../src/routes/mod.rs"
    )));
    routed.remove(DOCUMENT);
    assert_eq!(
        routed,
        openapi::documented_paths(&doc),
        "every route is documented"
    );
    assert_eq!(doc, serde_json::to_value(orders::openapi()).unwrap());
}

#[tokio::test]
async fn the_document_route_leaves_order_ids_alone() {
    let app = spawn_app().await;
    let user = fake_user();
    let id = ObjectId::new().to_hex();
    let missing = app
        .get(&format!("/api/orders/{id}"), Some(&user.cookie))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_messages(), ["Not found"]);
    let doc = app.get(DOCUMENT, Some(&user.cookie)).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["info"]["title"], "ticketing: orders");
}

#[test]
fn an_order_documents_its_status_values() {
    let doc = serde_json::to_value(orders::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Order"]["properties"]["status"]["$ref"],
        "#/components/schemas/OrderStatus"
    );
    assert_eq!(
        schemas["OrderStatus"]["enum"],
        serde_json::json!(["created", "cancelled", "awaiting:payment", "complete"])
    );
    let cancel = &doc["paths"]["/api/orders/{id}"]["delete"]["responses"];
    assert!(cancel["204"].get("content").is_none());
}
