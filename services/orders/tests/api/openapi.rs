//! The orders service's OpenAPI document: served at its URL, well formed, and in agreement
//! with the router.

use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use test_support::fake_user;
use test_support::openapi::ServiceDocument;

use crate::helpers::spawn_app;

const DOCUMENT: ServiceDocument = ServiceDocument {
    url: "/api/orders/openapi.json",
    operations: &[
        "GET /api/orders",
        "POST /api/orders",
        "GET /api/orders/{id}",
        "DELETE /api/orders/{id}",
        "GET /api/orders/tickets/{id}",
    ],
    routes_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes"),
    undocumented: &[],
};

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    DOCUMENT.assert_served_by(&app, &orders::openapi()).await;
}

#[tokio::test]
async fn the_document_route_leaves_order_ids_alone() {
    let app = spawn_app().await;
    let user = fake_user();
    let id = ObjectId::new().to_hex();
    let missing = app
        .get(&format!("/api/orders/{id}"), Some(&user.cookie))
        .await;
    missing.assert_error(StatusCode::NOT_FOUND, "Not found");
    let doc = app.get(DOCUMENT.url, Some(&user.cookie)).await;
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
