//! Who may do what to a record, deterministically: every owner-only route of the API and of
//! the client's pages × {owner, stranger, signed out} × each state of the record. Strangers
//! and signed-out callers are refused the same way whatever the state, and change nothing;
//! the owner gets what the state allows. (The fuzz tests keep probing inputs.)

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use test_support::{TestApp, TestUser, WAIT, eventually};

use crate::visitor::{Visitor, form_token};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Cancelled,
    Complete,
}

const STATES: [State; 3] = [State::Created, State::Cancelled, State::Complete];

struct People {
    seller: TestUser,
    buyer: TestUser,
    stranger: TestUser,
}

async fn people(app: &TestApp) -> People {
    People {
        seller: app.signup("seller@test.dev", "password").await,
        buyer: app.signup("buyer@test.dev", "password").await,
        stranger: app.signup("stranger@test.dev", "password").await,
    }
}

/// A fresh order of the buyer's in `state`; its id.
async fn order_in(app: &TestApp, people: &People, state: State) -> String {
    let ticket = app.create_ticket(&people.seller, "concert", 25.0).await;
    let ticket_id = ticket["id"].as_str().unwrap();
    let cookie = Some(people.buyer.cookie.as_str());
    let order = app.order_ticket(&people.buyer, ticket_id).await;
    let id = order["id"].as_str().unwrap().to_owned();
    match state {
        State::Created => {}
        State::Cancelled => {
            let cancelled = app.delete(&format!("/api/orders/{id}"), cookie).await;
            assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
        }
        State::Complete => {
            eventually("payments to take the order", WAIT, || async {
                let body = json!({"token": "tok_visa", "orderId": id});
                let paid = app.post("/api/payments", cookie, body).await;
                (paid.status == StatusCode::CREATED).then_some(())
            })
            .await;
            app.get_until(&format!("/api/orders/{id}"), cookie, "complete", |o| {
                o["status"] == "complete"
            })
            .await;
        }
    }
    id
}

/// The order's own state as its owner sees it: status, version and payment (its ticket's
/// replica moves on by itself as the reservation is applied).
async fn seen(app: &TestApp, people: &People, id: &str) -> Value {
    let order = app
        .get(&format!("/api/orders/{id}"), Some(&people.buyer.cookie))
        .await;
    assert_eq!(order.status, StatusCode::OK);
    json!({
        "status": order.body["status"],
        "version": order.body["version"],
        "payment": order.body["payment"],
    })
}

#[tokio::test]
async fn only_the_owner_reads_cancels_or_pays_an_order_in_the_api_in_every_state() {
    let app = crate::spawn_stack().await;
    let people = people(&app).await;
    for state in STATES {
        let id = order_in(&app, &people, state).await;
        let before = seen(&app, &people, &id).await;
        for cookie in [Some(people.stranger.cookie.as_str()), None] {
            let path = format!("/api/orders/{id}");
            let pay = json!({"token": "tok_visa", "orderId": id});
            for response in [
                app.get(&path, cookie).await,
                app.delete(&path, cookie).await,
                app.post("/api/payments", cookie, pay).await,
            ] {
                response.assert_error(StatusCode::UNAUTHORIZED, "Not authorized");
            }
        }
        assert_eq!(seen(&app, &people, &id).await, before, "{state:?}: changed");

        // The owner: what the state allows.
        let cookie = Some(people.buyer.cookie.as_str());
        let paid = app
            .post(
                "/api/payments",
                cookie,
                json!({"token": "tok_visa", "orderId": id}),
            )
            .await;
        match state {
            State::Created => assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body),
            State::Cancelled => {
                paid.assert_error(StatusCode::BAD_REQUEST, "Cannot pay for a cancelled order");
            }
            State::Complete => {
                paid.assert_error(StatusCode::BAD_REQUEST, "Order already paid");
            }
        }
        let other = order_in(&app, &people, state).await;
        let cancelled = app.delete(&format!("/api/orders/{other}"), cookie).await;
        match state {
            State::Created | State::Cancelled => {
                assert_eq!(
                    cancelled.status,
                    StatusCode::NO_CONTENT,
                    "{}",
                    cancelled.body
                );
                assert_eq!(seen(&app, &people, &other).await["status"], "cancelled");
            }
            State::Complete => {
                cancelled.assert_error(StatusCode::BAD_REQUEST, "Cannot cancel a paid order");
            }
        }
    }
}

#[tokio::test]
async fn only_the_seller_edits_a_ticket_free_or_reserved() {
    let app = crate::spawn_stack().await;
    let people = people(&app).await;
    for reserved in [false, true] {
        let ticket = app.create_ticket(&people.seller, "concert", 25.0).await;
        let id = ticket["id"].as_str().unwrap().to_owned();
        let path = format!("/api/tickets/{id}");
        if reserved {
            let order = app.order_ticket(&people.buyer, &id).await;
            let order_id = order["id"].as_str().unwrap().to_owned();
            app.ticket_where(&id, "the ticket reserved", |t| t["orderId"] == order_id)
                .await;
        }
        let before = app.get(&path, None).await.body;
        let edit = json!({"title": "changed", "price": 99});
        for cookie in [Some(people.stranger.cookie.as_str()), None] {
            app.put(&path, cookie, edit.clone())
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "Not authorized");
        }
        assert_eq!(
            app.get(&path, None).await.body,
            before,
            "reserved {reserved}"
        );
        let own = app.put(&path, Some(&people.seller.cookie), edit).await;
        if reserved {
            own.assert_error(StatusCode::BAD_REQUEST, "Cannot edit a reserved ticket");
        } else {
            assert_eq!(own.status, StatusCode::OK, "{}", own.body);
            assert_eq!(own.body["version"], 1);
        }
    }
}

/// Posts a page form of the client as `visitor`, with a token from a page they may open.
async fn post_page(
    visitor: &mut Visitor<'_>,
    app: &TestApp,
    action: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let token_page = if visitor.has_session() {
        "/tickets/new"
    } else {
        "/auth/signin"
    };
    let (_, _, html) = visitor.get(token_page).await;
    let token = form_token(&html).unwrap_or_else(|| panic!("no form on {token_page}"));
    let (status, headers, _) = visitor
        .post(action, fields, Some(&token), Some(&app.address.clone()))
        .await;
    let location = headers
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location)
}

#[tokio::test]
async fn only_the_owner_opens_pays_or_cancels_an_order_page_in_every_state() {
    let app = crate::spawn_stack().await;
    let people = people(&app).await;
    for state in STATES {
        let id = order_in(&app, &people, state).await;
        let page = format!("/orders/{id}");
        let cancel = format!("{page}/cancel");
        let before = seen(&app, &people, &id).await;

        let mut stranger = Visitor::signed_in(&app, &people.stranger);
        assert_eq!(
            stranger.get(&page).await.0,
            StatusCode::NOT_FOUND,
            "{state:?}"
        );
        for action in [&page, &cancel] {
            let (status, _) =
                post_page(&mut stranger, &app, action, &[("token", "tok_visa")]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{state:?} {action}");
        }
        let mut nobody = Visitor::new(&app);
        let (status, headers, _) = nobody.get(&page).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{state:?}");
        assert!(
            headers[LOCATION]
                .to_str()
                .unwrap()
                .starts_with("/auth/signin")
        );
        for action in [&page, &cancel] {
            let (status, location) =
                post_page(&mut nobody, &app, action, &[("token", "tok_visa")]).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{state:?} {action}");
            assert!(location.starts_with("/auth/signin"), "{location}");
        }
        assert_eq!(seen(&app, &people, &id).await, before, "{state:?}: changed");

        // The owner: the page, then what the state allows.
        let mut owner = Visitor::signed_in(&app, &people.buyer);
        assert_eq!(owner.get(&page).await.0, StatusCode::OK);
        let (status, location) = post_page(&mut owner, &app, &page, &[("token", "tok_visa")]).await;
        match state {
            State::Created => {
                assert_eq!(
                    (status, location.as_str()),
                    (StatusCode::SEE_OTHER, "/orders")
                );
            }
            State::Cancelled | State::Complete => assert_eq!(status, StatusCode::BAD_REQUEST),
        }
        let other = order_in(&app, &people, state).await;
        let other_page = format!("/orders/{other}");
        let (status, location) =
            post_page(&mut owner, &app, &format!("{other_page}/cancel"), &[]).await;
        match state {
            State::Created | State::Cancelled => {
                assert_eq!(
                    (status, location.as_str()),
                    (StatusCode::SEE_OTHER, other_page.as_str())
                );
                assert_eq!(seen(&app, &people, &other).await["status"], "cancelled");
            }
            State::Complete => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(seen(&app, &people, &other).await["status"], "complete");
            }
        }
    }
}
