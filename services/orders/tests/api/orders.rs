//! The HTTP API of orders: every DESIGN.md row, and the events it publishes.

use std::time::{Duration, SystemTime};

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::{TestApp, TestContext, WAIT, assert_one_created, eventually, fake_user};

use crate::helpers::{order, publish_update, replica_at, replicated_ticket, spawn_app};

#[tokio::test]
async fn ordering_requires_a_session_and_a_valid_ticket_id() {
    let app = spawn_app().await;
    let body = json!({"ticketId": "5f1e0f3a9d3b2c0017a1b2c3"});
    app.assert_needs_session(Method::POST, "/api/orders", body)
        .await;
    let user = fake_user();
    for body in [
        json!({}),
        json!({"ticketId": ""}),
        json!({"ticketId": "nope"}),
        json!({"ticketId": 42}),
    ] {
        let response = app
            .post("/api/orders", Some(&user.cookie), body.clone())
            .await;
        response.assert_bad_field("ticketId", &body);
    }
}

#[tokio::test]
async fn ordering_an_unknown_ticket_is_404() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/orders",
            Some(&fake_user().cookie),
            json!({"ticketId": "5f1e0f3a9d3b2c0017a1b2c3"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    response.assert_error_shape();
}

#[tokio::test]
async fn an_order_holds_the_ticket_for_the_window_and_is_published() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 20.0).await;
    let user = fake_user();
    let before = SystemTime::now();
    let created = order(&app, &user, &ticket_id).await;
    let after = SystemTime::now();
    assert_eq!(created["status"], "created");
    assert_eq!(created["version"], 0);
    assert_eq!(created["userId"], user.id.as_str());
    assert_eq!(
        created["ticket"],
        json!({"id": ticket_id, "title": "concert v0", "price": 20.0, "version": 0})
    );
    let expires_at = created["expiresAt"].as_str().unwrap();
    let expires_at = mongodb::bson::DateTime::parse_rfc3339_str(expires_at)
        .unwrap()
        .to_system_time();
    // The window starts when the order is made, somewhere between `before` and `after`
    // however long that took (expiresAt is in whole milliseconds).
    let hold = Duration::from_secs(900);
    assert!(
        expires_at + Duration::from_millis(1) >= before + hold && expires_at <= after + hold,
        "expiresAt {expires_at:?} not 900 s after the order ({before:?} .. {after:?})"
    );

    let events = eventually("order:created", WAIT, || async {
        let events = app.context.events().await;
        events.into_iter().find(|(s, _)| s == "order:created")
    })
    .await;
    assert_eq!(events.1["id"], created["id"]);
    assert_eq!(events.1["version"], 0);
    assert_eq!(events.1["status"], "created");
    assert_eq!(events.1["userId"], user.id.as_str());
    assert_eq!(events.1["expiresAt"], created["expiresAt"]);
    assert_eq!(events.1["ticket"], json!({"id": ticket_id, "price": 20.0}));
}

#[tokio::test]
async fn a_reserved_ticket_cannot_be_ordered_again_until_cancelled() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 20.0).await;
    let owner = fake_user();
    let first = order(&app, &owner, &ticket_id).await;
    let first_path = format!("/api/orders/{}", first["id"].as_str().unwrap());
    let buyer = fake_user();
    let order_again = || {
        app.post(
            "/api/orders",
            Some(&buyer.cookie),
            json!({"ticketId": ticket_id}),
        )
    };
    order_again()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "Ticket is already reserved");
    // Someone else's cancel changes nothing: the ticket stays reserved.
    let stranger_cancel = app.delete(&first_path, Some(&buyer.cookie)).await;
    stranger_cancel.assert_error(StatusCode::UNAUTHORIZED, "Not authorized");
    order_again()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "Ticket is already reserved");
    // The owner's cancel frees it: the other buyer's order now goes through.
    let owner_cancel = app.delete(&first_path, Some(&owner.cookie)).await;
    assert_eq!(owner_cancel.status, StatusCode::NO_CONTENT);
    let second = order_again().await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(second.body["ticket"]["id"], ticket_id.as_str());
}

#[tokio::test]
async fn buyers_racing_for_one_ticket_get_exactly_one_order() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 20.0).await;
    let buyers: Vec<_> = (0..20).map(|_| fake_user()).collect();
    let attempts = buyers.iter().map(|buyer| {
        app.post(
            "/api/orders",
            Some(&buyer.cookie),
            json!({"ticketId": ticket_id}),
        )
    });
    let responses = join_all(attempts).await;
    for refused in assert_one_created(&responses) {
        assert_eq!(
            refused.error_messages(),
            ["Ticket is already reserved"],
            "{}",
            refused.body
        );
    }
}

#[tokio::test]
async fn users_see_only_their_own_orders_newest_first() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let user = fake_user();
    let other = fake_user();
    let mut mine = Vec::new();
    for _ in 0..2 {
        let ticket_id = replicated_ticket(&app, &bus, 5.0).await;
        mine.push(order(&app, &user, &ticket_id).await["id"].clone());
    }
    let theirs = order(&app, &other, &replicated_ticket(&app, &bus, 5.0).await).await;

    let list = app.get("/api/orders", Some(&user.cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<_> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(ids, [mine[1].clone(), mine[0].clone()]);
    assert!(list.body[0]["ticket"]["title"].is_string());
    assert_eq!(
        app.get("/api/orders", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let path = format!("/api/orders/{}", theirs["id"].as_str().unwrap());
    assert_eq!(
        app.get(&path, Some(&user.cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get(&path, Some(&other.cookie)).await.body["id"],
        theirs["id"]
    );
    assert_eq!(
        app.get("/api/orders/nope", Some(&user.cookie)).await.status,
        StatusCode::NOT_FOUND
    );
    let unknown = app
        .get("/api/orders/5f1e0f3a9d3b2c0017a1b2c3", Some(&user.cookie))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancelling_frees_the_ticket_once_and_publishes_once() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 5.0).await;
    let user = fake_user();
    let created = order(&app, &user, &ticket_id).await;
    let path = format!("/api/orders/{}", created["id"].as_str().unwrap());

    for _ in 0..2 {
        let response = app.delete(&path, Some(&user.cookie)).await;
        assert_eq!(response.status, StatusCode::NO_CONTENT);
    }
    let shown = app.get(&path, Some(&user.cookie)).await.body;
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["version"], 1);

    // The ticket can be ordered again.
    order(&app, &fake_user(), &ticket_id).await;
    let events = eventually(
        "two order:created and one order:cancelled",
        WAIT,
        || async {
            let events = app.context.events().await;
            let created = events.iter().filter(|(s, _)| s == "order:created").count();
            (created == 2).then_some(events)
        },
    )
    .await;
    let cancelled: Vec<_> = events
        .iter()
        .filter(|(s, _)| s == "order:cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "a second cancel publishes nothing");
    // Nor at the publisher, where a repeat with the same id would still show.
    test_support::metrics::assert_published_exactly(&app, "orders", "order:cancelled", 1).await;
    test_support::metrics::assert_published_exactly(&app, "orders", "order:created", 2).await;
    assert_eq!(
        cancelled[0].1,
        json!({"id": created["id"], "version": 1, "ticket": {"id": ticket_id}})
    );
}

#[tokio::test]
async fn an_order_shows_the_latest_replicated_price() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 5.0).await;
    publish_update(&bus, &ticket_id, 1, 12.5).await;
    replica_at(&app, &ticket_id, 1).await;
    let created = order(&app, &fake_user(), &ticket_id).await;
    assert_eq!(created["ticket"]["price"], 12.5);
    assert_eq!(created["ticket"]["version"], 1);
}

#[tokio::test]
async fn the_hold_window_is_configurable() {
    let context = TestContext::new();
    let service = context
        .build_with::<orders::Config>(|env| env.with("ORDER_EXPIRATION_SECONDS", "60"))
        .await;
    let app = TestApp::serve(context.clone(), vec![service]).await;
    let bus = context.bus().await;
    let ticket_id = replicated_ticket(&app, &bus, 5.0).await;
    let created = order(&app, &fake_user(), &ticket_id).await;
    let expires_at =
        mongodb::bson::DateTime::parse_rfc3339_str(created["expiresAt"].as_str().unwrap()).unwrap();
    let window = expires_at
        .to_system_time()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        window <= Duration::from_secs(60) && window > Duration::from_secs(50),
        "{window:?}"
    );
}

#[tokio::test]
async fn a_stranger_can_neither_see_nor_cancel_an_order_nor_learn_its_state() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let owner = fake_user();
    let stranger = fake_user();
    let created = order(&app, &owner, &replicated_ticket(&app, &bus, 5.0).await).await;
    let path = format!("/api/orders/{}", created["id"].as_str().unwrap());

    for response in [
        app.delete(&path, Some(&stranger.cookie)).await,
        app.get(&path, Some(&stranger.cookie)).await,
    ] {
        response.assert_error(StatusCode::UNAUTHORIZED, "Not authorized");
    }
    let unchanged = app.get(&path, Some(&owner.cookie)).await.body;
    assert_eq!(unchanged["status"], "created");
    assert_eq!(unchanged["version"], 0);

    // Cancelled by its owner: a stranger still gets 401, not the owner's idempotent 204.
    assert_eq!(
        app.delete(&path, Some(&owner.cookie)).await.status,
        StatusCode::NO_CONTENT
    );
    let refused = app.delete(&path, Some(&stranger.cookie)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let cancelled = app.get(&path, Some(&owner.cookie)).await.body;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["version"], 1, "one cancellation, the owner's");
}
