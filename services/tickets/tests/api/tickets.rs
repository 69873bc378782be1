//! The HTTP API of tickets: every DESIGN.md row.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_support::{TestApp, TestContext, fake_user};

use crate::helpers::{build, order_created, spawn_app};
use mongodb::bson::oid::ObjectId;

#[tokio::test]
async fn creating_a_ticket_requires_a_session() {
    let app = spawn_app().await;
    let body = json!({"title": "concert", "price": 10});
    let response = app
        .assert_needs_session(Method::POST, "/api/tickets", body)
        .await;
    response.assert_error(StatusCode::UNAUTHORIZED, "Not authorized");
}

#[tokio::test]
async fn a_created_ticket_is_returned_with_version_0() {
    let app = spawn_app().await;
    let user = fake_user();
    let ticket = app.create_ticket(&user, " concert ", 20.5).await;
    assert_eq!(ticket["title"], "concert");
    assert_eq!(ticket["price"], 20.5);
    assert_eq!(ticket["userId"], user.id.as_str());
    assert_eq!(ticket["version"], 0);
    assert!(ticket.get("orderId").is_none());
    let shown = app
        .get(
            &format!("/api/tickets/{}", ticket["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body, ticket);
}

#[tokio::test]
async fn invalid_titles_and_prices_are_400_with_their_field() {
    let app = spawn_app().await;
    let user = fake_user();
    let cases = [
        (json!({"title": "", "price": 10}), "title"),
        (json!({"title": "   ", "price": 10}), "title"),
        (json!({"price": 10}), "title"),
        (json!({"title": "a", "price": -10}), "price"),
        (json!({"title": "a", "price": 0}), "price"),
        (json!({"title": "a"}), "price"),
        (json!({"title": "a", "price": "ten"}), "price"),
        (json!({"title": "a", "price": 1.001}), "price"),
        (json!({"title": 5, "price": 1}), "title"),
    ];
    for (body, field) in cases {
        let response = app
            .post("/api/tickets", Some(&user.cookie), body.clone())
            .await;
        response.assert_bad_field(field, &body).assert_error_shape();
    }
}

#[tokio::test]
async fn each_broken_rule_of_a_price_or_title_has_its_own_message() {
    let app = spawn_app().await;
    let user = fake_user();
    let cases = [
        (
            json!({"title": "a", "price": 0}),
            "Price must be greater than 0",
        ),
        (
            json!({"title": "a", "price": 10.005}),
            "Price must have at most two decimals",
        ),
        // One unit in the last place below 1.36: parsed exactly, it is not whole cents.
        (
            json!({"title": "a", "price": 1.3599999999999999}),
            "Price must have at most two decimals",
        ),
        (
            json!({"title": "a", "price": 1e9}),
            "Price must be at most 1000000",
        ),
        (json!({"title": " ", "price": 1}), "Title is required"),
        (
            json!({"title": "x".repeat(201), "price": 1}),
            "Title must be at most 200 characters",
        ),
    ];
    for (body, message) in cases {
        let response = app
            .post("/api/tickets", Some(&user.cookie), body.clone())
            .await;
        let field = if message.starts_with("Price") {
            "price"
        } else {
            "title"
        };
        response.assert_bad_field(field, &body);
        assert_eq!(response.error_messages(), [message], "{body}");
    }
    // Whole cents up to the maximum, and a title of 200 characters once trimmed, are fine.
    for (title, price) in [
        (format!(" {} ", "x".repeat(200)), 1_000_000.0),
        ("a".into(), 1.36),
    ] {
        let body = json!({"title": title, "price": price});
        let response = app
            .post("/api/tickets", Some(&user.cookie), body.clone())
            .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{body}: {}",
            response.body
        );
    }
}

#[tokio::test]
async fn an_unknown_or_malformed_id_is_404() {
    let app = spawn_app().await;
    for id in ["5f1e0f3a9d3b2c0017a1b2c3", "nope", "123", "%FF", "%C3%28"] {
        let response = app.get(&format!("/api/tickets/{id}"), None).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{id}");
        response.assert_error_shape();
    }
}

#[tokio::test]
async fn the_owner_updates_a_ticket_and_its_version_grows() {
    let app = spawn_app().await;
    let user = fake_user();
    let ticket = app.create_ticket(&user, "concert", 5.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    for (n, price) in [(1, 10), (2, 15)] {
        let response = app
            .put(
                &path,
                Some(&user.cookie),
                json!({"title": "new", "price": price}),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body["version"], n);
        assert_eq!(response.body["price"], price as f64);
    }
    assert_eq!(app.get(&path, None).await.body["version"], 2);
}

#[tokio::test]
async fn update_checks_session_then_body_then_existence_then_owner() {
    let app = spawn_app().await;
    let owner = fake_user();
    let other = fake_user();
    let ticket = app.create_ticket(&owner, "concert", 5.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let valid = json!({"title": "x", "price": 1});

    app.assert_needs_session(Method::PUT, &path, valid.clone())
        .await;
    let bad_body = app
        .put(
            "/api/tickets/nope",
            Some(&other.cookie),
            json!({"title": ""}),
        )
        .await;
    assert_eq!(
        bad_body.status,
        StatusCode::BAD_REQUEST,
        "body is checked before existence"
    );
    // Existence before ownership: a stranger learns "not found" of a missing ticket and
    // "not authorized" only of an existing one.
    let missing = app
        .put(
            "/api/tickets/5f1e0f3a9d3b2c0017a1b2c3",
            Some(&other.cookie),
            valid.clone(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let not_owner = app.put(&path, Some(&other.cookie), valid.clone()).await;
    assert_eq!(not_owner.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get(&path, None).await.body["version"],
        0,
        "nothing changed"
    );
}

#[tokio::test]
async fn concurrent_updates_of_one_ticket_are_all_applied_in_turn() {
    let app = spawn_app().await;
    let user = fake_user();
    let ticket = app.create_ticket(&user, "concert", 5.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let updates =
        (1..=10).map(|n| app.put(&path, Some(&user.cookie), json!({"title": "t", "price": n})));
    let responses = join_all(updates).await;
    let mut versions: Vec<i64> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body["version"].as_i64().unwrap()
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=10).collect::<Vec<_>>(),
        "each update got its own version"
    );
    assert_eq!(app.get(&path, None).await.body["version"], 10);
}

#[tokio::test]
async fn the_list_shows_unreserved_tickets_newest_first_with_paging() {
    let app = spawn_app().await;
    let user = fake_user();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.create_ticket(&user, &format!("t{n}"), 1.0).await["id"].clone());
    }
    // A sixth, reserved by an order, is not for sale.
    let reserved = app.create_ticket(&user, "reserved", 1.0).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bus = app.context.bus().await;
    bus.publish(&order_created(&ObjectId::new().to_hex(), &reserved))
        .await
        .unwrap();
    app.ticket_where(&reserved, "the ticket reserved", |t| {
        t.get("orderId").is_some()
    })
    .await;
    let all = app.get("/api/tickets", None).await;
    assert_eq!(all.status, StatusCode::OK);
    let listed = ids_of(&all.body);
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    assert!(all.headers.get("link").is_none());

    let first = app.get("/api/tickets?limit=2", None).await;
    assert_eq!(first.body.as_array().unwrap().len(), 2);
    let link = first
        .headers
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let second = app.get(next, None).await;
    assert_eq!(ids_of(&second.body), newest_first[2..4]);
}

/// The ids of a list of tickets, in order.
fn ids_of(list: &Value) -> Vec<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect()
}

#[tokio::test]
async fn bad_paging_parameters_are_400() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "limit=-1",
        "after=nope",
        "after=123",
    ] {
        let response = app.get(&format!("/api/tickets?{query}"), None).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}");
        response.assert_error_shape();
    }
}

/// The list is served from memory between changes: a change through this replica shows in its
/// very next list, and one through another replica (or straight in the database) shortly after.
#[tokio::test]
async fn the_list_shows_changes_from_this_replica_at_once_and_from_others_soon() {
    let context = TestContext::new();
    let this = TestApp::serve(context.clone(), vec![build(&context).await]).await;
    let other = TestApp::serve(context.clone(), vec![build(&context).await]).await;
    let user = fake_user();
    let titles = |body: &serde_json::Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };

    for n in 0..3 {
        // Read twice, so that the page is kept, then change it through the same replica.
        this.get("/api/tickets", None).await;
        assert_eq!(titles(&this.get("/api/tickets", None).await.body).len(), n);
        this.create_ticket(&user, &format!("mine {n}"), 1.0).await;
        assert_eq!(
            titles(&this.get("/api/tickets", None).await.body)[0],
            format!("mine {n}")
        );
    }

    other
        .create_ticket(&user, "through the other replica", 1.0)
        .await;
    this.get_until("/api/tickets", None, "the other replica's ticket", |r| {
        titles(r).first().map(String::as_str) == Some("through the other replica")
    })
    .await;

    let db = context.database("tickets").await;
    db.collection::<mongodb::bson::Document>("tickets")
        .update_many(
            mongodb::bson::doc! {},
            mongodb::bson::doc! { "$set": { "title": "renamed in the database" } },
        )
        .await
        .unwrap();
    this.get_until(
        "/api/tickets",
        None,
        "the titles changed in the database",
        |r| titles(r).iter().all(|t| t == "renamed in the database"),
    )
    .await;
}
