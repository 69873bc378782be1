//! `ticketing postman` (what `cargo xtask postman` runs): the Postman collection and its
//! environments, generated from the services' OpenAPI documents and committed under `postman/`.
//!
//! The output is deterministic — the documents' order, ids derived from names, pretty JSON —
//! so a stale committed file shows up as a diff (the test below fails on one).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

/// Where the files live, relative to the workspace root.
pub const DIR: &str = "postman";

/// The collection's file name.
pub const COLLECTION_FILE: &str = "ticketing.postman_collection.json";

/// The environments: file name, environment name and its `baseUrl`.
pub const ENVIRONMENTS: [(&str, &str, &str); 2] = [
    (
        "ticketing.postman_environment.json",
        "ticketing.dev",
        "https://ticketing.dev",
    ),
    (
        "ticketing-local.postman_environment.json",
        "ticketing local",
        "http://127.0.0.1:3000",
    ),
];

const SCHEMA: &str = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Arguments of `ticketing postman`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write to (the workspace's `postman/` by default).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Writes nothing; fails naming the files that differ from what would be written.
    #[arg(long)]
    check: bool,
}

/// Every public service's OpenAPI document, under the name of its folder, in the order a
/// visitor uses them.
pub fn documents() -> Vec<(&'static str, OpenApi)> {
    vec![
        ("auth", auth::openapi()),
        ("tickets", tickets::openapi()),
        ("orders", orders::openapi()),
        ("payments", payments::openapi()),
    ]
}

/// The workspace's `postman/` directory.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DIR)
}

/// The files to write: name and content (pretty JSON with a final newline).
pub fn files() -> Result<Vec<(String, String)>> {
    let mut files = vec![(
        COLLECTION_FILE.to_owned(),
        render(&collection(&documents())?)?,
    )];
    for (file, name, base_url) in ENVIRONMENTS {
        files.push((file.to_owned(), render(&environment(name, base_url))?));
    }
    Ok(files)
}

fn render(value: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// The files under `dir` that are missing or differ from [`files`].
pub fn stale(dir: &Path) -> Result<Vec<String>> {
    Ok(files()?
        .into_iter()
        .filter(|(name, content)| {
            std::fs::read_to_string(dir.join(name)).ok().as_ref() != Some(content)
        })
        .map(|(name, _)| name)
        .collect())
}

/// Runs `ticketing postman`: writes the files, or with `--check` fails on stale ones.
pub fn run(args: &Args) -> Result<()> {
    let dir = args.out.clone().unwrap_or_else(default_dir);
    if args.check {
        let stale = stale(&dir)?;
        anyhow::ensure!(
            stale.is_empty(),
            "stale in {}: {}; run `cargo xtask postman`",
            dir.display(),
            stale.join(", ")
        );
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    for (name, content) in files()? {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The collection: one folder per service, one request per operation with an example body,
/// `{{baseUrl}}` in every URL, and saved example responses. The `session` cookie needs no
/// setup: Postman keeps the one signup or signin sets and sends it back.
pub fn collection(documents: &[(&str, OpenApi)]) -> Result<Value> {
    let mut folders = Vec::new();
    for (service, doc) in documents {
        let whole = serde_json::to_value(doc)?;
        let mut items = Vec::new();
        for (path, item) in &doc.paths.paths {
            let item = serde_json::to_value(item)?;
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    items.push(request_item(service, path, method, operation, &whole));
                }
            }
        }
        let description = whole["info"]["description"].as_str().unwrap_or_default();
        let description = description
            .strip_suffix(common::openapi::CONVENTIONS)
            .unwrap_or(description)
            .trim_end();
        folders.push(json!({
            "id": stable_id(&format!("folder/{service}")),
            "name": service,
            "description": description,
            "item": items,
        }));
    }
    Ok(json!({
        "info": {
            "_postman_id": stable_id("collection/ticketing"),
            "name": "ticketing",
            "description": format!(
                "The ticketing marketplace's HTTP API, one folder per service. Generated by \
                 `cargo xtask postman` from the services' OpenAPI documents (served at \
                 `/api/<service>/openapi.json`, browsable at `/api/docs`); regenerate rather \
                 than edit.\n\nPick the `ticketing.dev` or `ticketing local` environment \
                 (`baseUrl`). Send *sign up* or *sign in* first: Postman keeps the `session` \
                 cookie they set and sends it with every later request.\n\n{}",
                common::openapi::CONVENTIONS
            ),
            "schema": SCHEMA,
        },
        "item": folders,
        "variable": [{
            "key": "baseUrl",
            "value": ENVIRONMENTS[0].2,
            "type": "string",
        }],
    }))
}

fn request_item(service: &str, path: &str, method: &str, operation: &Value, doc: &Value) -> Value {
    let operation_id = operation["operationId"].as_str().unwrap_or(path);
    let parameters: Vec<&Value> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(name) => format!(":{}", name.trim_end_matches('}')),
            None => segment.to_owned(),
        })
        .collect();
    let variables: Vec<Value> = parameters
        .iter()
        .filter(|p| p["in"] == "path")
        .map(|p| {
            json!({
                "key": p["name"],
                "value": text(&parameter_example(p, doc)),
                "description": p["description"],
            })
        })
        .collect();
    // Optional query parameters are listed but off: the request works as is.
    let query: Vec<Value> = parameters
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| {
            json!({
                "key": p["name"],
                "value": text(&parameter_example(p, doc)),
                "description": p["description"],
                "disabled": p["required"] != true,
            })
        })
        .collect();
    let raw_url = format!("{{{{baseUrl}}}}/{}", segments.join("/"));
    let mut url = json!({
        "raw": raw_url,
        "host": ["{{baseUrl}}"],
        "path": segments,
    });
    if !query.is_empty() {
        url["query"] = Value::Array(query);
    }
    if !variables.is_empty() {
        url["variable"] = Value::Array(variables);
    }
    let mut request = json!({
        "method": method.to_uppercase(),
        "header": [],
        "url": url,
        "description": request_description(operation),
    });
    if let Some(schema) = operation["requestBody"]["content"]["application/json"].get("schema") {
        let body = serde_json::to_string_pretty(&example(schema, doc, 0)).unwrap_or_default();
        request["header"] = json!([{"key": "Content-Type", "value": "application/json"}]);
        request["body"] = json!({
            "mode": "raw",
            "raw": body,
            "options": {"raw": {"language": "json"}},
        });
    }
    let responses = operation["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(status, response)| saved_response(status, response, &request, doc))
        .collect::<Vec<_>>();
    json!({
        "id": stable_id(&format!("request/{service}/{operation_id}")),
        "name": operation_id.replace('_', " "),
        "request": request,
        "response": responses,
    })
}

/// What the operation does, whether it needs the session, and every response it can give.
fn request_description(operation: &Value) -> String {
    let mut out = String::new();
    for part in ["summary", "description"] {
        if let Some(text) = operation[part].as_str() {
            out.push_str(text);
            out.push_str("\n\n");
        }
    }
    let requirements = operation["security"].as_array();
    let session = requirements.is_some_and(|r| r.iter().any(|r| r.get("session").is_some()));
    let optional = requirements.is_some_and(|r| r.iter().any(|r| r == &json!({})));
    if session && optional {
        out.push_str("Reads the `session` cookie when there is one.\n\n");
    } else if session {
        out.push_str("Needs the `session` cookie: send *sign up* or *sign in* first.\n\n");
    }
    out.push_str("Responses:\n");
    for (status, response) in operation["responses"].as_object().into_iter().flatten() {
        let description = response["description"].as_str().unwrap_or_default();
        out.push_str(&format!("- {status}: {description}\n"));
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let description = header["description"].as_str().unwrap_or_default();
            out.push_str(&format!("  - `{name}` header: {description}\n"));
        }
    }
    out.trim_end().to_owned()
}

/// A saved example of a response with a JSON body (or with none, like 204).
fn saved_response(status: &str, response: &Value, request: &Value, doc: &Value) -> Option<Value> {
    let code: u16 = status.parse().ok()?;
    let reason = reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or_default();
    let media = &response["content"]["application/json"];
    let body = match (media.get("example"), media.get("schema")) {
        (Some(example), _) => Some(example.clone()),
        (None, Some(schema)) => Some(example(schema, doc, 0)),
        (None, None) => None,
    };
    let headers = match body {
        Some(_) => json!([{"key": "Content-Type", "value": "application/json"}]),
        None => json!([]),
    };
    Some(json!({
        "name": format!("{code} {reason}"),
        "originalRequest": request,
        "status": reason,
        "code": code,
        "_postman_previewlanguage": if body.is_some() { "json" } else { "text" },
        "header": headers,
        "body": body.map(|b| serde_json::to_string_pretty(&b).unwrap_or_default()).unwrap_or_default(),
    }))
}

fn parameter_example(parameter: &Value, doc: &Value) -> Value {
    match parameter.get("example") {
        Some(example) => example.clone(),
        None => parameter
            .get("schema")
            .map_or(Value::Null, |s| example(s, doc, 0)),
    }
}

/// A value as a URL or form field shows it: strings without quotes.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An example value for `schema`: its own example where it has one, otherwise one built from
/// its type (an object's required properties, array items, a format's typical value, bounds).
fn example(schema: &Value, doc: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer));
        return target.map_or(Value::Null, |s| example(s, doc, depth + 1));
    }
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(first) = schema["examples"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        let variants = schema[combinator].as_array().into_iter().flatten();
        if let Some(variant) = variants.into_iter().find(|v| v["type"] != "null") {
            return example(variant, doc, depth + 1);
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.iter().find(|k| *k != "null").cloned(),
        kind => Some(kind.clone()),
    };
    match kind.as_ref().and_then(Value::as_str) {
        Some("object") => {
            let required = schema["required"].as_array();
            Value::Object(
                schema["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(name, _)| required.is_some_and(|r| r.contains(&json!(name))))
                    .map(|(name, property)| (name.clone(), example(property, doc, depth + 1)))
                    .collect::<Map<_, _>>(),
            )
        }
        Some("array") => json!([example(&schema["items"], doc, depth + 1)]),
        Some("string") => match schema["format"].as_str() {
            Some("date-time") => json!("2024-01-01T12:00:00Z"),
            Some("email") => json!("me@example.com"),
            _ => json!("string"),
        },
        Some("integer") => schema.get("minimum").cloned().unwrap_or(json!(0)),
        Some("number") => schema.get("minimum").cloned().unwrap_or(json!(1)),
        Some("boolean") => json!(false),
        _ => Value::Null,
    }
}

fn environment(name: &str, base_url: &str) -> Value {
    json!({
        "id": stable_id(&format!("environment/{name}")),
        "name": name,
        "values": [{
            "key": "baseUrl",
            "value": base_url,
            "type": "default",
            "enabled": true,
        }],
        "_postman_variable_scope": "environment",
    })
}

/// A UUID (version 8, RFC 9562) derived from `name` with 128-bit FNV-1a: the same name gives
/// the same id on every run, so re-importing replaces rather than duplicates.
fn stable_id(name: &str) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for byte in name.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // Version 8 in bits 48..52, variant 0b10 in bits 64..66 (counted from the most significant).
    let hash = (hash & !(0xf << 76) & !(0x3 << 62)) | (0x8 << 76) | (0x2 << 62);
    let hex = format!("{hash:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_committed_collection_and_environments_are_up_to_date() {
        let stale = stale(&default_dir()).unwrap();
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
        for ((_, doc), folder) in documents.iter().zip(folders) {
            let doc = serde_json::to_value(doc).unwrap();
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
        let ids: std::collections::BTreeSet<_> =
            requests.iter().map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), requests.len(), "ids are unique");
        assert_eq!(stable_id("x"), stable_id("x"));
        let id = stable_id("request/tickets/create_ticket");
        assert_eq!((id.len(), &id[14..15]), (36, "8"), "{id}");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }
}
