//! Checks of a service's OpenAPI document: a coherent OpenAPI 3.1 document, served at its URL,
//! that agrees with the router it describes.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use utoipa::openapi::OpenApi;

use crate::TestApp;

/// The methods whose routing [`assert_router_agrees`] checks on every documented path (HEAD
/// follows GET in axum, and OPTIONS belongs to CORS).
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The operations of a document as `"METHOD /path"`, e.g. `"GET /api/tickets/{id}"`, sorted.
pub fn operations(doc: &Value) -> BTreeSet<String> {
    paths(doc)
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|item| item.keys())
                .filter(|key| METHODS.contains(&key.to_uppercase().as_str()))
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect()
}

/// The paths of a document, sorted.
pub fn documented_paths(doc: &Value) -> BTreeSet<String> {
    paths(doc).map(|(path, _)| path.clone()).collect()
}

/// The paths a routes source file gives axum (`.route("/api/…", …)`), the way
/// `infra/check.py` reads them, sorted.
pub fn routed_paths(source: &str) -> BTreeSet<String> {
    source
        .split(".route(")
        .skip(1)
        .filter_map(|call| {
            let literal = call.trim_start().strip_prefix('"')?;
            literal.split('"').next().map(str::to_owned)
        })
        .collect()
}

fn paths(doc: &Value) -> impl Iterator<Item = (&String, &Value)> {
    doc["paths"].as_object().into_iter().flatten()
}

/// Asserts that `doc` is a coherent OpenAPI 3.1 document: version 3.1.x, an info title and
/// version, unique operation ids, responses with valid status keys on every operation, every
/// `{param}` of a path template declared as a required path parameter (and nothing else
/// declared in the path), known security schemes, and every `$ref` resolving.
///
/// # Panics
/// With every problem found.
#[track_caller]
pub fn assert_well_formed(doc: &Value) {
    let mut problems = Vec::new();
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.1.") {
        problems.push(format!("openapi is {version:?}, not 3.1.x"));
    }
    for field in ["title", "version"] {
        if !doc["info"][field].is_string() {
            problems.push(format!("info.{field} is missing"));
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    let mut operation_ids = BTreeMap::new();
    for (path, item) in paths(doc) {
        let template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let operations = item.as_object().into_iter().flatten().filter(|(key, _)| {
            [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&key.as_str())
        });
        for (method, operation) in operations {
            let at = format!("{} {path}", method.to_uppercase());
            match operation["operationId"].as_str() {
                Some(id) => {
                    if let Some(other) = operation_ids.insert(id.to_owned(), at.clone()) {
                        problems.push(format!("{at}: operationId {id} is also {other}'s"));
                    }
                }
                None => problems.push(format!("{at}: no operationId")),
            }
            let responses = operation["responses"].as_object();
            if responses.is_none_or(|r| r.is_empty()) {
                problems.push(format!("{at}: no responses"));
            }
            for status in responses.into_iter().flat_map(|r| r.keys()) {
                let valid = status == "default"
                    || (status.len() == 3 && status.parse::<u16>().is_ok_and(|s| s >= 100));
                if !valid {
                    problems.push(format!("{at}: response key {status:?}"));
                }
            }
            let parameters = operation["parameters"].as_array().into_iter().flatten();
            let mut declared = BTreeSet::new();
            for parameter in parameters.filter(|p| p["in"] == "path") {
                let name = parameter["name"].as_str().unwrap_or_default();
                declared.insert(name);
                if parameter["required"] != true {
                    problems.push(format!("{at}: path parameter {name} is not required"));
                }
            }
            if declared != template {
                problems.push(format!(
                    "{at}: path parameters {declared:?}, template has {template:?}"
                ));
            }
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().into_iter().flat_map(|r| r.keys()) {
                    if schemes.get(scheme).is_none() {
                        problems.push(format!("{at}: unknown security scheme {scheme}"));
                    }
                }
            }
        }
    }
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for reference in refs {
        let resolves = reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .is_some();
        if !resolves {
            problems.push(format!("$ref {reference} does not resolve"));
        }
    }
    assert!(
        problems.is_empty(),
        "the OpenAPI document has problems:\n  {}",
        problems.join("\n  ")
    );
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => out.push(reference),
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

/// Fetches the document at `url` from `app` and asserts it is served as JSON, is
/// [well formed](assert_well_formed), and [agrees with the router](assert_router_agrees).
///
/// # Panics
/// When any of that fails.
pub async fn assert_served(app: &TestApp, url: &str) -> Value {
    let response = app.get(url, None).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "GET {url}: {}",
        response.body
    );
    let content_type = response.headers[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap_or_default();
    assert_eq!(content_type, "application/json", "GET {url}");
    assert_well_formed(&response.body);
    assert_router_agrees(app, &response.body).await;
    response.body
}

/// What one service's document must be, checked whole by [`ServiceDocument::assert_served_by`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceDocument {
    /// Where the service serves it, e.g. `/api/tickets/openapi.json`.
    pub url: &'static str,
    /// Exactly the operations it lists, as `"GET /api/tickets/{id}"`.
    pub operations: &'static [&'static str],
    /// The folder of the service's routes files (`src/routes` of its crate): the paths every
    /// `.rs` file in it gives axum, read with [`routed_paths`], are the paths to document.
    pub routes_dir: &'static str,
    /// Routed paths that are not operations (pages such as Swagger UI's).
    pub undocumented: &'static [&'static str],
}

impl ServiceDocument {
    /// Asserts the document is [served](assert_served) by `app` at its URL, equal to
    /// `document` (the service's `openapi()`), with exactly the operations expected, and
    /// documenting every path the routes files give axum except its own URL and the
    /// undocumented ones. Returns it for checks of its own.
    ///
    /// # Panics
    /// On the first disagreement.
    pub async fn assert_served_by(&self, app: &TestApp, document: &OpenApi) -> Value {
        let url = self.url;
        let doc = assert_served(app, url).await;
        let expected = serde_json::to_value(document).unwrap_or_default();
        assert!(doc == expected, "{url} is not the service's openapi()");
        let expected: BTreeSet<String> = self.operations.iter().map(|&o| o.to_owned()).collect();
        assert_eq!(operations(&doc), expected, "the operations of {url}");
        let mut routed = routed_paths_in(self.routes_dir);
        routed.remove(url);
        for path in self.undocumented {
            routed.remove(*path);
        }
        assert_eq!(routed, documented_paths(&doc), "every route is in {url}");
        doc
    }
}

/// The paths the `.rs` files of `folder` give axum, read with [`routed_paths`].
///
/// # Panics
/// When the folder cannot be read or holds no `.rs` file.
fn routed_paths_in(folder: &str) -> BTreeSet<String> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) => panic!("routes folder {folder}: {error}"),
    };
    let mut files = 0;
    let mut routed = BTreeSet::new();
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(error) => panic!("routes folder {folder}: {error}"),
        };
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(source) => routed.extend(routed_paths(&source)),
            Err(error) => panic!("{}: {error}", path.display()),
        }
        files += 1;
    }
    assert!(files > 0, "no routes file in {folder}");
    routed
}

/// Asserts that the router serves exactly the documented methods on every documented path:
/// each one is routed (the answer is not 405), every other method answers 405. Path
/// parameters are filled with a fresh ObjectId, so no request finds a record.
///
/// # Panics
/// Listing every disagreement.
pub async fn assert_router_agrees(app: &TestApp, doc: &Value) {
    let documented = operations(doc);
    let mut problems = Vec::new();
    for (path, _) in paths(doc) {
        let concrete: Vec<String> = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    mongodb::bson::oid::ObjectId::new().to_hex()
                } else {
                    segment.to_owned()
                }
            })
            .collect();
        let concrete = concrete.join("/");
        for method in METHODS {
            let Ok(http_method) = Method::from_bytes(method.as_bytes()) else {
                continue;
            };
            let status = app.request(http_method, &concrete, None, None).await.status;
            let is_documented = documented.contains(&format!("{method} {path}"));
            let is_routed = status != StatusCode::METHOD_NOT_ALLOWED;
            if is_documented != is_routed {
                problems.push(format!(
                    "{method} {concrete} answers {status}, but the document {} {method} {path}",
                    if is_documented { "has" } else { "has no" }
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the router and the document disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routed_paths_reads_route_literals_only() {
        let source = r#"
            Router::new()
                .route("/api/tickets", get(list).post(create))
                .route(
                    "/api/tickets/{id}",
                    get(show),
                )
            // "/api/elsewhere" is a comment, and so is .routes("x")
        "#;
        assert_eq!(
            routed_paths(source),
            BTreeSet::from(["/api/tickets".to_owned(), "/api/tickets/{id}".to_owned()])
        );
    }

    #[test]
    fn operations_are_method_and_path() {
        let doc = json!({"paths": {"/a/{id}": {"get": {}, "put": {}, "parameters": []}}});
        assert_eq!(
            operations(&doc),
            BTreeSet::from(["GET /a/{id}".to_owned(), "PUT /a/{id}".to_owned()])
        );
    }

    #[test]
    #[should_panic(expected = "template has")]
    fn an_undeclared_path_parameter_is_a_problem() {
        assert_well_formed(&json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a/{id}": {"get": {"operationId": "a", "responses": {"200": {}}}}},
        }));
    }

    #[test]
    #[should_panic(expected = "does not resolve")]
    fn a_dangling_ref_is_a_problem() {
        assert_well_formed(&json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"get": {"operationId": "a", "responses": {
                "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/X"}}}}
            }}}},
        }));
    }
}
