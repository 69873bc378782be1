//! `ticketing openapi`: the public services' OpenAPI documents as one JSON object, for tools
//! that should not build the services themselves (`cargo xtask postman` reads it).

use serde_json::{Map, Value};

/// Every public service's OpenAPI document under the name of its folder, in the order a
/// visitor uses them: `{"auth": …, "tickets": …, "orders": …, "payments": …}`.
pub fn documents() -> anyhow::Result<Value> {
    let documents = [
        ("auth", auth::openapi()),
        ("tickets", tickets::openapi()),
        ("orders", orders::openapi()),
        ("payments", payments::openapi()),
    ];
    let mut object = Map::new();
    for (name, document) in documents {
        object.insert(name.to_owned(), serde_json::to_value(document)?);
    }
    Ok(Value::Object(object))
}

/// Runs `ticketing openapi`: prints [`documents`] as pretty JSON on stdout.
pub fn run() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&documents()?)?);
    Ok(())
}
