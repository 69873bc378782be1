//! The orders service's OpenAPI document: served at its URL, well formed, and in agreement
//! with the router.

use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use test_support::{fake_user, openapi};

use crate::helpers::spawn_app;

const DOCUMENT: &str = "/api/orders/openapi.json";

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    openapi::assert_service_document(
        &app,
        DOCUMENT,
        &orders::openapi(),
        &[
            "GET /api/orders",
            "POST /api/orders",
            "GET /api/orders/{id}",
            "DELETE /api/orders/{id}",
            "GET /api/orders/tickets/{id}",
        ],
        &[
            include_str!("../../src/routes/orders.rs"),
            include_str!("../../src/routes/mod.rs"),
        ],
        &[],
    )
    .await;
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
