//! Another site cannot act as the visitor: cross-site posts to the client's forms (sign in,
//! purchase, pay, cancel) get 403, set no cookie and change nothing, and so do posts without
//! the visitor's own form token; a sign-out link from elsewhere only offers a button.

use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;
use test_support::TestApp;

use crate::visitor::{Page, Visitor, form_token};

const EVIL: &str = "https://evil.example";

/// A post as another site's page makes the visitor's browser send it: its `Origin`, and the
/// best token it can have (none, or one from its own visit).
async fn from_evil(visitor: &mut Visitor<'_>, action: &str, fields: &[(&str, &str)]) -> Page {
    visitor.post(action, fields, None, Some(EVIL)).await
}

fn assert_refused((status, headers, body): &Page) {
    assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        headers.get(SET_COOKIE).is_none(),
        "a refused post set a cookie"
    );
    assert!(body.contains("not sent from this site"), "{body}");
}

#[tokio::test]
async fn a_cross_site_sign_in_sets_no_session() {
    let app = crate::spawn_stack().await;
    app.signup("attacker@test.dev", "password").await;
    let mut victim = Visitor::new(&app);
    // The victim has visited before: a csrf cookie and a real page token of their own.
    let (_, _, html) = victim.get("/auth/signin").await;
    let token = form_token(&html).unwrap();
    let credentials = [("email", "attacker@test.dev"), ("password", "password")];
    assert_refused(&from_evil(&mut victim, "/auth/signin", &credentials).await);
    // Even with the right token, the browser's word that it came from elsewhere decides.
    assert_refused(
        &victim
            .post("/auth/signin", &credentials, Some(&token), Some(EVIL))
            .await,
    );
    // A browser that says nothing of where it comes from needs the token.
    let mut old_browser = Visitor::new(&app);
    old_browser.get("/auth/signin").await;
    assert_refused(
        &old_browser
            .post("/auth/signin", &credentials, None, None)
            .await,
    );
    let stolen = form_token(&Visitor::new(&app).get("/auth/signin").await.2).unwrap();
    assert_refused(
        &old_browser
            .post("/auth/signin", &credentials, Some(&stolen), None)
            .await,
    );
    assert!(!victim.has_session() && !old_browser.has_session());
    // And the real form works.
    let (status, _, body) = victim
        .submit("/auth/signin", "/auth/signin", &credentials)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(victim.has_session());
}

#[tokio::test]
async fn cross_site_purchase_pay_and_cancel_change_nothing() {
    let app = crate::spawn_stack().await;
    let (_seller, buyer, ticket_id) = crate::seller_buyer_and_ticket(&app).await;
    app.get_until(
        &format!("/api/orders/tickets/{ticket_id}"),
        None,
        "replica",
        |b| b["id"] == ticket_id.as_str(),
    )
    .await;
    let mut browser = Visitor::signed_in(&app, &buyer);
    let ticket_page = format!("/tickets/{ticket_id}");
    assert_refused(&from_evil(&mut browser, &ticket_page, &[]).await);
    let orders = app.get("/api/orders", Some(&buyer.cookie)).await;
    assert_eq!(
        orders.body.as_array().map(Vec::len),
        Some(0),
        "an order was placed"
    );

    let (status, headers, _) = browser.submit(&ticket_page, &ticket_page, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let order_path = headers["location"].to_str().unwrap().to_owned();
    assert_refused(&from_evil(&mut browser, &order_path, &[("token", "tok_visa")]).await);
    assert_refused(&from_evil(&mut browser, &format!("{order_path}/cancel"), &[]).await);
    let order = app
        .get(&format!("/api{order_path}"), Some(&buyer.cookie))
        .await;
    assert_eq!(order.body["status"], "created", "{}", order.body);
}

#[tokio::test]
async fn a_sign_out_link_from_elsewhere_asks_first() {
    let app = crate::spawn_stack().await;
    let user = app.signup("someone@test.dev", "password").await;
    let mut visitor = Visitor::signed_in(&app, &user);
    // An <img src=/auth/signout> on another site: no sign-out, a page with a button instead.
    let image = app
        .http()
        .get(format!("{}/auth/signout", app.address))
        .header("sec-fetch-site", "cross-site");
    let (status, headers, body) = visitor.send(image).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"action="/auth/signout""#), "{body}");
    assert!(
        headers
            .get_all(SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("session="))
    );
    assert!(visitor.has_session());
    // Its button, or the header's link on this site's own pages, signs out.
    let token = form_token(&body).unwrap();
    let origin = app.address.clone();
    let (status, _, _) = visitor
        .post("/auth/signout", &[], Some(&token), Some(&origin))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(!visitor.has_session(), "the button did not sign out");
    let mut again = Visitor::signed_in(&app, &user);
    let (status, _, _) = again.get("/auth/signout").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        !again.has_session(),
        "the same-origin link did not sign out"
    );
}

/// What a visitor's browser does with a page of another site that posts a sign-in form at
/// load: the page, served on another port (another origin).
pub(crate) async fn evil_page(app: &TestApp) -> String {
    let stack = app.address.clone();
    let html = format!(
        r#"<!doctype html><title>free tickets</title>
<form id="f" method="post" action="{stack}/auth/signin">
<input name="email" value="attacker@test.dev"><input name="password" value="password">
</form><script>document.getElementById("f").submit()</script>"#
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}
