//! Flows across services: what one service does becomes visible in another through events.

use reqwest::StatusCode;
use serde_json::json;
use test_support::{WAIT, eventually};

use crate::spawn_stack;

#[tokio::test]
async fn an_order_reserves_the_ticket_in_tickets_and_cancelling_frees_it() {
    let app = spawn_stack().await;
    let (seller, buyer, id) = crate::seller_buyer_and_ticket(&app).await;

    // The order can be placed as soon as the replica has the ticket.
    let order = eventually("the ticket to reach the orders replica", WAIT, || async {
        let response = app
            .post("/api/orders", Some(&buyer.cookie), json!({"ticketId": id}))
            .await;
        (response.status == StatusCode::CREATED).then_some(response.body)
    })
    .await;
    assert_eq!(order["ticket"]["price"], 25.0);

    let reserved = app
        .ticket_where(&id, "tickets to see the reservation", |t| {
            t["orderId"] == order["id"]
        })
        .await;
    assert_eq!(reserved["version"], 1);
    let edit = app
        .put(
            &format!("/api/tickets/{id}"),
            Some(&seller.cookie),
            json!({"title": "x", "price": 1}),
        )
        .await;
    assert_eq!(edit.error_messages(), ["Cannot edit a reserved ticket"]);

    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(
        app.delete(&path, Some(&buyer.cookie)).await.status,
        StatusCode::NO_CONTENT
    );
    let freed = app
        .ticket_where(&id, "tickets to see the cancellation", |t| {
            t.get("orderId").is_none()
        })
        .await;
    assert_eq!(freed["version"], 2);
    // And orders' replica follows the ticket's own versions.
    eventually("the replica at version 2", WAIT, || async {
        let replica = app
            .get(&format!("/api/orders/tickets/{id}"), None)
            .await
            .body;
        (replica["version"] == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn unknown_api_paths_are_404_in_the_error_shape_and_health_covers_every_dependency() {
    let app = spawn_stack().await;
    let response = app.get("/api/nothing/here", None).await;
    response.assert_error(StatusCode::NOT_FOUND, "Not found");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    for check in ["auth-mongo", "tickets-mongo", "orders-mongo", "nats"] {
        assert_eq!(ready.body["checks"][check], "ok", "{}", ready.body);
    }
}

#[tokio::test]
async fn the_whole_saga_buy_pay_and_expire() {
    let app = crate::spawn_stack_with(&[("ORDER_EXPIRATION_SECONDS", "2")]).await;
    let seller = app.signup("seller@test.dev", "password").await;
    let buyer = app.signup("buyer@test.dev", "password").await;
    let mut tickets = Vec::new();
    for title in ["paid", "expired"] {
        let ticket = app.create_ticket(&seller, title, 25.0).await;
        tickets.push(ticket["id"].as_str().unwrap().to_owned());
    }
    let mut orders = Vec::new();
    for id in &tickets {
        let order = app.order_ticket(&buyer, id).await;
        orders.push(order["id"].as_str().unwrap().to_owned());
    }
    // Pay the first as soon as payments knows it.
    eventually("payments to accept the order", WAIT, || async {
        let response = app
            .post(
                "/api/payments",
                Some(&buyer.cookie),
                json!({"token": "tok_visa", "orderId": orders[0]}),
            )
            .await;
        (response.status == StatusCode::CREATED).then_some(())
    })
    .await;
    let order_status = |id: String, status: &'static str| {
        let app = &app;
        let cookie = buyer.cookie.clone();
        async move {
            eventually(&format!("order {id} {status}"), WAIT, || async {
                let body = app
                    .get(&format!("/api/orders/{id}"), Some(&cookie))
                    .await
                    .body;
                (body["status"] == status).then_some(())
            })
            .await
        }
    };
    order_status(orders[0].clone(), "complete").await;
    order_status(orders[1].clone(), "cancelled").await;
    // The expired order's ticket is free again; the paid one stays reserved.
    app.ticket_where(&tickets[1], "the expired ticket to be freed", |t| {
        t.get("orderId").is_none()
    })
    .await;
    let paid_ticket = app
        .get(&format!("/api/tickets/{}", tickets[0]), None)
        .await
        .body;
    assert_eq!(paid_ticket["orderId"], orders[0].as_str());
    // After its own expiration fired, the paid order is still complete.
    eventually("the paid order's expiration", WAIT, || async {
        let events = app.context.events().await;
        events
            .iter()
            .any(|(s, p)| s == "expiration:complete" && p["orderId"] == orders[0].as_str())
            .then_some(())
    })
    .await;
    let body = app
        .get(&format!("/api/orders/{}", orders[0]), Some(&buyer.cookie))
        .await
        .body;
    assert_eq!(body["status"], "complete");
}
