//! The Postman environments: one per place the stack runs, each setting `baseUrl`.

use serde_json::{Value, json};

use super::id::stable_id;

/// The environments: file name, environment name and its `baseUrl`.
pub(super) const ENVIRONMENTS: [(&str, &str, &str); 2] = [
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

/// The environment `name`, whose `baseUrl` is `base_url`.
pub(super) fn environment(name: &str, base_url: &str) -> Value {
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
