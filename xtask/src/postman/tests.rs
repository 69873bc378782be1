//! The generator's tests, on the documents built in this process (the services are
//! dev-dependencies only, so `cargo xtask` never builds them).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::collection::{SCHEMA, collection, conventions};
use super::id::stable_id;
use super::step::HELPERS;
use super::{DIR, stale};

/// The documents as `ticketing openapi` prints them.
fn documents() -> Map<String, Value> {
    serde_json::from_value(json!({
        "auth": auth::openapi(),
        "tickets": tickets::openapi(),
        "orders": orders::openapi(),
        "payments": payments::openapi(),
    }))
    .unwrap()
}

#[test]
fn the_committed_collection_and_environments_are_up_to_date() {
    let stale = stale(&devenv::workspace_root().join(DIR), &documents()).unwrap();
    assert!(
        stale.is_empty(),
        "postman/{} differ from the OpenAPI documents: run `cargo xtask postman`",
        stale.join(", postman/")
    );
}

/// Every request of the collection, folder by folder.
fn requests(collection: &Value) -> Vec<&Value> {
    collection["item"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|folder| folder["item"].as_array().unwrap())
        .collect()
}

/// A request's script for `listen` (`prerequest`, `test`), as one text.
fn script(item: &Value, listen: &str) -> String {
    item["event"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["listen"] == listen)
        .flat_map(|event| event["script"]["exec"].as_array().unwrap())
        .map(|line| line.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_operation_is_sent_and_every_request_checks_status_and_body() {
    let documents = documents();
    let collection = collection(&documents).unwrap();
    assert_eq!(collection["info"]["schema"], SCHEMA);
    let folders: Vec<_> = collection["item"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(folders, ["flow", "errors"]);
    let operations: BTreeSet<String> = documents
        .values()
        .flat_map(|doc| {
            doc["paths"]
                .as_object()
                .unwrap()
                .iter()
                .flat_map(|(path, item)| {
                    item.as_object()
                        .unwrap()
                        .keys()
                        .map(move |method| format!("{} {path}", method.to_uppercase()))
                })
        })
        .collect();
    let mut sent = BTreeSet::new();
    let mut assertions = 0;
    for item in requests(&collection) {
        let request = &item["request"];
        let path = request["url"]["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let s = s.as_str().unwrap();
                match s.strip_prefix(':') {
                    Some(name) => format!("{{{name}}}"),
                    None => s.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        assert!(
            request["url"]["raw"]
                .as_str()
                .unwrap()
                .starts_with("{{baseUrl}}/api/"),
            "{request}"
        );
        sent.insert(format!("{} /{path}", request["method"].as_str().unwrap()));
        let test = script(item, "test");
        let own = test.strip_prefix(HELPERS.trim_end()).unwrap_or(&test);
        assert!(
            own.contains("expectStatus(") || own.contains("expectError("),
            "{} checks no status",
            item["name"]
        );
        assert!(
            own.contains("pm.test(") || own.contains("expectError("),
            "{} checks no body",
            item["name"]
        );
        // What newman counts: each `pm.test`, one in `expectStatus`, two in `expectError`.
        assertions += own.matches("pm.test(").count()
            + own.matches("expectStatus(").count()
            + 2 * own.matches("expectError(").count();
    }
    assert_eq!(sent, operations, "every operation, and only those, is sent");
    assert!(assertions >= 40, "{assertions} assertions");
}

#[test]
fn steps_send_their_values_and_the_run_carries_ids_from_step_to_step() {
    let collection = collection(&documents()).unwrap();
    let requests = requests(&collection);
    let named = |name: &str| *requests.iter().find(|r| r["name"] == name).unwrap();

    let signup = named("sign up");
    assert_eq!(
        signup["request"]["body"]["raw"],
        r#"{"email": "{{email}}", "password": "{{password}}"}"#
    );
    assert!(script(signup, "prerequest").contains("pm.collectionVariables.set('email'"));
    assert!(script(named("create ticket"), "test").contains("set('ticketId'"));

    let update = &named("update ticket")["request"]["url"];
    assert_eq!(update["raw"], "{{baseUrl}}/api/tickets/:id");
    assert_eq!(update["variable"][0]["value"], "{{ticketId}}");

    let page = &named("list tickets, next page")["request"]["url"];
    assert_eq!(
        page["raw"],
        "{{baseUrl}}/api/tickets?limit=1&after={{after}}"
    );
    let first = &named("list tickets, first page")["request"]["url"]["query"];
    assert_eq!(
        first[0],
        json!({"key": "limit", "value": "1", "description": first[0]["description"]})
    );
    assert_eq!(
        first[1]["disabled"], true,
        "the cursor is listed but not sent"
    );

    // A step that waits for an event pauses before each try after the first.
    let replica = named("the ticket reaches orders");
    assert!(script(replica, "prerequest").contains("setTimeout"));
    assert!(script(replica, "test").contains("retryUnless("));
    assert!(script(named("show order"), "prerequest").is_empty());
}

#[test]
fn documented_responses_are_saved_once_per_operation_each_named_example_apart() {
    let collection = collection(&documents()).unwrap();
    let requests = requests(&collection);
    let named = |name: &str| *requests.iter().find(|r| r["name"] == name).unwrap();
    let saved: Vec<&str> = named("sign up")["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(saved.contains(&"201 Created"), "{saved:?}");
    assert!(
        saved.contains(&"400 Bad Request: Email in use"),
        "{saved:?}"
    );
    assert!(saved.contains(&"429 Too Many Requests"), "{saved:?}");
    assert_eq!(named("sign up with an email in use")["response"], json!([]));
    let ids: BTreeSet<_> = requests.iter().map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), requests.len(), "ids are unique");
    assert_eq!(stable_id("x"), stable_id("x"));
    let id = stable_id("request/tickets/create_ticket");
    assert_eq!((id.len(), &id[14..15]), (36, "8"), "{id}");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    assert_eq!(
        named("show ticket")["request"]["url"]["variable"][0]["value"],
        "{{ticketId}}"
    );
}

#[test]
fn the_conventions_found_at_the_end_of_each_description_are_commons() {
    assert_eq!(
        conventions(&documents()).unwrap(),
        common::openapi::CONVENTIONS
    );
}
