//! The tickets service's OpenAPI document: served at its URL, well formed, and in agreement
//! with the router.

use reqwest::StatusCode;
use test_support::fake_user;
use test_support::openapi::ServiceDocument;

use crate::helpers::spawn_app;

const DOCUMENT: ServiceDocument = ServiceDocument {
    url: "/api/tickets/openapi.json",
    operations: &[
        "GET /api/tickets",
        "POST /api/tickets",
        "GET /api/tickets/{id}",
        "PUT /api/tickets/{id}",
    ],
    routes_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes"),
    undocumented: &[],
};

#[tokio::test]
async fn the_document_is_served_and_describes_every_route() {
    let app = spawn_app().await;
    DOCUMENT.assert_served_by(&app, &tickets::openapi()).await;
}

#[tokio::test]
async fn the_document_route_leaves_ticket_ids_alone() {
    let app = spawn_app().await;
    let ticket = app.create_ticket(&fake_user(), "concert", 10.0).await;
    let id = ticket["id"].as_str().unwrap();
    let shown = app.get(&format!("/api/tickets/{id}"), None).await;
    assert_eq!((shown.status, &shown.body), (StatusCode::OK, &ticket));
    let doc = app.get(DOCUMENT.url, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["info"]["title"], "ticketing: tickets");
}

#[test]
fn the_ticket_list_documents_paging_and_its_link_header() {
    let doc = serde_json::to_value(tickets::openapi()).unwrap();
    let list = &doc["paths"]["/api/tickets"]["get"];
    let parameters: Vec<_> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    assert_eq!(parameters, [("limit", "query"), ("after", "query")]);
    // An empty or malformed cursor is 400: the document says what a cursor looks like.
    assert_eq!(
        list["parameters"][1]["schema"]["pattern"],
        "^[0-9a-fA-F]{24}$"
    );
    let price = &doc["components"]["schemas"]["TicketInput"]["properties"]["price"];
    assert_eq!(
        [&price["minimum"], &price["maximum"], &price["multipleOf"]],
        [
            &serde_json::json!(0.01),
            &serde_json::json!(1_000_000),
            &serde_json::json!(0.01)
        ]
    );
    assert!(list["responses"]["200"]["headers"]["Link"].is_object());
    let create = &doc["paths"]["/api/tickets"]["post"];
    assert_eq!(create["security"], serde_json::json!([{"session": []}]));
    for status in ["201", "400", "401", "413", "503"] {
        assert!(create["responses"][status].is_object(), "{status}");
    }
    assert_eq!(
        create["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}
