//! `ticketing openapi`: the four public services' documents in one object, in the order a
//! visitor uses them.

#[test]
fn the_openapi_command_holds_the_four_public_documents_in_order() {
    let documents = ticketing::openapi::documents().unwrap();
    let documents = documents.as_object().unwrap();
    let names: Vec<&str> = documents.keys().map(String::as_str).collect();
    assert_eq!(names, ["auth", "tickets", "orders", "payments"]);
    for (name, document) in documents {
        assert_eq!(document["openapi"], "3.1.0", "{name}");
        let paths = document["paths"].as_object().unwrap();
        assert!(!paths.is_empty(), "{name} has no paths");
    }
}
