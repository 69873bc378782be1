//! The client's pages over plain HTTP: status codes, redirects, escaping and the 404s that
//! the browser journey does not reach.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use serde_json::json;
use test_support::TestApp;

use crate::visitor::{Page, Visitor, form_token};

async fn page(
    request: reqwest::RequestBuilder,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// Signs in as someone@test.dev through the client's form, asking to be sent to `next`.
async fn sign_in_through_the_form(app: &TestApp, next: &str) -> Page {
    let form = [
        ("email", "someone@test.dev"),
        ("password", "password"),
        ("next", next),
    ];
    Visitor::new(app)
        .submit("/auth/signin", "/auth/signin", &form)
        .await
}

fn location(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn unknown_pages_are_html_and_unknown_api_paths_stay_json() {
    let app = crate::spawn_stack().await;
    for path in [
        "/no/such/page",
        "/tickets/not-an-id",
        "/orders/%FF",
        "/tickets/..%2F..%2Fapi",
    ] {
        let (status, headers, body) = page(app.http().get(format!("{}{path}", app.address))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(body.contains("Page not found"), "{path}: {body}");
    }
    let api = app.get("/api/no/such/route", None).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    api.assert_error_shape();
}

#[tokio::test]
async fn pages_that_need_a_session_send_visitors_to_sign_in_and_back() {
    let app = crate::spawn_stack().await;
    for (path, back) in [("/tickets/new", "/tickets/new"), ("/orders", "/orders")] {
        let (status, headers, _) = page(app.http().get(format!("{}{path}", app.address))).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&headers), format!("/auth/signin?next={back}"));
    }
    app.signup("someone@test.dev", "password").await;
    let (status, headers, _) = sign_in_through_the_form(&app, "/orders").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/orders");
    assert!(
        headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("session=")),
        "the session cookie is passed on"
    );
    // Only local paths are followed: no open redirect through `next`.
    for foreign in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let (status, headers, _) = sign_in_through_the_form(&app, foreign).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location(&headers), "/", "{foreign}");
    }
}

#[tokio::test]
async fn titles_are_escaped_and_forms_refuse_garbage_with_a_page() {
    let app = crate::spawn_stack().await;
    let seller = app.signup("seller@test.dev", "password").await;
    app.create_ticket(&seller, "<script>alert(1)</script> & co", 10.0)
        .await;
    let (status, _, body) = page(app.http().get(format!("{}/", app.address))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; co")
            || body.contains("&lt;script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert(1)"), "unescaped title");

    // A form post with a JSON body, or bytes that are no form at all: a 4xx page, never a
    // 500 — refused for their missing form token before anything reads them, and with one,
    // for what they are.
    let mut visitor = Visitor::signed_in(&app, &seller);
    let (_, _, sell) = visitor.get("/tickets/new").await;
    let token = form_token(&sell).unwrap();
    let json_post = app
        .http()
        .post(format!("{}/auth/signin", app.address))
        .json(&json!({"email": "x", "_csrf": token}));
    let (status, headers, _) = visitor.send(json_post).await;
    assert!(status.is_client_error(), "{status}");
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let mut garbage = b"_csrf=".to_vec();
    garbage.extend_from_slice(token.as_bytes());
    garbage.extend_from_slice(&[b'&', 0xff, 0xfe, b'=', 0x00]);
    let garbage = app
        .http()
        .post(format!("{}/tickets/new", app.address))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(garbage);
    let (status, _, _) = visitor.send(garbage).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the token passed, the form did not"
    );
}

#[tokio::test]
async fn assets_are_served_with_their_types_and_long_caching() {
    let app = crate::spawn_stack().await;
    let (_, _, home) = page(app.http().get(format!("{}/", app.address))).await;
    for (asset, kind) in [
        ("/assets/app.css", "text/css"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = page(app.http().get(format!("{}{asset}", app.address))).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(
            headers[CONTENT_TYPE].to_str().unwrap().starts_with(kind),
            "{asset}"
        );
        assert!(
            headers[CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable"),
            "{asset}"
        );
        assert!(!body.is_empty());
    }
    // Pages link the versioned URLs, so a changed asset is fetched again.
    assert!(home.contains("/assets/app.css?v="), "{home}");
}

#[tokio::test]
async fn an_order_can_be_cancelled_from_its_page() {
    let app = crate::spawn_stack().await;
    let (seller, buyer, ticket_id) = crate::seller_buyer_and_ticket(&app).await;
    // The orders replica learns of the ticket from its event.
    app.get_until(
        &format!("/api/orders/tickets/{ticket_id}"),
        None,
        "replica",
        |b| b["id"] == ticket_id.as_str(),
    )
    .await;
    let ticket_page = format!("/tickets/{ticket_id}");
    let mut buyer_visits = Visitor::signed_in(&app, &buyer);
    let (status, headers, _) = buyer_visits.submit(&ticket_page, &ticket_page, &[]).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "purchase redirects to the order"
    );
    let order_path = location(&headers).to_owned();
    assert!(order_path.starts_with("/orders/"), "{order_path}");

    // Someone else's order is a 404 page for them, and their cancel does nothing.
    let cancel_path = format!("{order_path}/cancel");
    let mut seller_visits = Visitor::signed_in(&app, &seller);
    let (_, _, sell) = seller_visits.get("/tickets/new").await;
    let seller_token = form_token(&sell).unwrap();
    let origin = app.address.clone();
    let (status, _, _) = seller_visits
        .post(&cancel_path, &[], Some(&seller_token), Some(&origin))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let untouched = app
        .get(&format!("/api{order_path}"), Some(&buyer.cookie))
        .await;
    assert_eq!(
        untouched.body["status"], "created",
        "the seller's cancel cancelled it"
    );
    assert_eq!(untouched.body["version"], 0);
    let (status, headers, _) = buyer_visits.submit(&order_path, &cancel_path, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), order_path);
    let order = app
        .get(&format!("/api{order_path}"), Some(&buyer.cookie))
        .await;
    assert_eq!(order.body["status"], "cancelled");
}
