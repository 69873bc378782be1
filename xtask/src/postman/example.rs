//! Example values for the collection's bodies, parameters and responses, from the documents'
//! schemas.

use serde_json::{Map, Value, json};

/// The example of a parameter: its own, or one built from its schema.
pub(super) fn parameter_example(parameter: &Value, doc: &Value) -> Value {
    match parameter.get("example") {
        Some(example) => example.clone(),
        None => parameter
            .get("schema")
            .map_or(Value::Null, |s| example(s, doc, 0)),
    }
}

/// A value as a URL or form field shows it: strings without quotes.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An example value for `schema`: its own example where it has one, otherwise one built from
/// its type (an object's required properties, array items, a format's typical value, bounds).
pub(super) fn example(schema: &Value, doc: &Value, depth: usize) -> Value {
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
