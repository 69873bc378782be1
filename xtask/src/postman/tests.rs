//! The generator's tests, on the documents built in this process (the services are
//! dev-dependencies only, so `cargo xtask` never builds them).

#![allow(clippy::unwrap_used)]

use serde_json::{Map, Value, json};

use super::collection::{SCHEMA, collection, conventions};
use super::id::stable_id;
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

#[test]
fn every_operation_is_a_request_in_its_service_folder() {
    let documents = documents();
    let collection = collection(&documents).unwrap();
    assert_eq!(collection["info"]["schema"], SCHEMA);
    let folders = collection["item"].as_array().unwrap();
    let names: Vec<_> = folders
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["auth", "tickets", "orders", "payments"]);
    for (doc, folder) in documents.values().zip(folders) {
        let mut operations: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().unwrap();
                item.keys()
                    .map(|method| format!("{} {path}", method.to_uppercase()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut requests: Vec<String> = folder["item"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
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
                format!("{} /{path}", request["method"].as_str().unwrap())
            })
            .collect();
        operations.sort();
        requests.sort();
        assert_eq!(requests, operations);
    }
}

#[test]
fn bodies_are_examples_and_ids_are_stable() {
    let collection = collection(&documents()).unwrap();
    let requests: Vec<&Value> = collection["item"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|folder| folder["item"].as_array().unwrap())
        .collect();
    let named = |name: &str| {
        requests
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| &r["request"])
            .unwrap()
    };
    let signup = named("sign up");
    let body: Value = serde_json::from_str(signup["body"]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"email": "me@example.com", "password": "secret"})
    );
    let pay: Value =
        serde_json::from_str(named("create payment")["body"]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(pay["token"], "tok_visa");
    let show = &named("show ticket")["url"];
    assert_eq!(show["raw"], "{{baseUrl}}/api/tickets/:id");
    assert_eq!(show["variable"][0]["value"], common::openapi::EXAMPLE_ID);
    let ids: std::collections::BTreeSet<_> = requests.iter().map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), requests.len(), "ids are unique");
    assert_eq!(stable_id("x"), stable_id("x"));
    let id = stable_id("request/tickets/create_ticket");
    assert_eq!((id.len(), &id[14..15]), (36, "8"), "{id}");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
}

#[test]
fn the_conventions_found_at_the_end_of_each_description_are_commons() {
    assert_eq!(
        conventions(&documents()).unwrap(),
        common::openapi::CONVENTIONS
    );
}
