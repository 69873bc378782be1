//! Expirations fire at `expiresAt`, once, and survive a restart.

use std::time::{Duration, SystemTime};

use common::events::{OrderCreated, OrderCreatedTicket, OrderStatus};
use mongodb::bson::{DateTime, oid::ObjectId};
use serde_json::Value;
use test_support::{TestApp, TestContext, WAIT, eventually, redeliver};

async fn spawn(context: &TestContext) -> TestApp {
    let service = context.build::<expiration::Config>().await;
    TestApp::serve(context.clone(), vec![service]).await
}

fn order_expiring_at(at: SystemTime) -> OrderCreated {
    OrderCreated {
        id: ObjectId::new().to_hex(),
        version: 0,
        status: OrderStatus::Created,
        user_id: "buyer".to_owned(),
        expires_at: DateTime::from_system_time(at)
            .try_to_rfc3339_string()
            .unwrap(),
        ticket: OrderCreatedTicket {
            id: ObjectId::new().to_hex(),
            price: 10.0,
        },
    }
}

async fn expirations(context: &TestContext) -> Vec<Value> {
    context
        .events()
        .await
        .into_iter()
        .filter(|(subject, _)| subject == "expiration:complete")
        .map(|(_, payload)| payload)
        .collect()
}

async fn wait_for_expiration(context: &TestContext, order_id: &str) -> SystemTime {
    eventually(&format!("expiration of {order_id}"), WAIT, || async {
        let fired = expirations(context)
            .await
            .iter()
            .any(|e| e["orderId"] == order_id);
        fired.then(SystemTime::now)
    })
    .await
}

#[tokio::test]
async fn an_expiration_fires_at_its_time_and_only_once() {
    let context = TestContext::new();
    let app = spawn(&context).await;
    let bus = context.bus().await;
    let due = SystemTime::now() + Duration::from_millis(800);
    let order = order_expiring_at(due);
    bus.publish(&order).await.unwrap();
    // A redelivered order:created (fresh message id) schedules nothing new.
    redeliver(&bus, &order).await;

    let fired = wait_for_expiration(&context, &order.id).await;
    assert!(fired >= due, "fired before its time");
    // The scheduler sleeps until the next due time, so it fires within milliseconds; the
    // bound is about time (an expiration that waits for a periodic sweep would miss it) but
    // leaves a loaded 2-core machine 5 s.
    let late = fired.duration_since(due).unwrap();
    assert!(late < Duration::from_secs(5), "fired {late:?} late");
    let all = expirations(&context).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0], serde_json::json!({"orderId": order.id}));
    // Once at the publisher too: the stream would drop a repeat with the same id.
    test_support::metrics::assert_published_exactly(&app, "expiration", "expiration:complete", 1)
        .await;
}

#[tokio::test]
async fn an_expiration_scheduled_before_a_restart_still_fires() {
    let context = TestContext::new();
    let first = spawn(&context).await;
    let bus = context.bus().await;
    let due = SystemTime::now() + Duration::from_secs(2);
    let order = order_expiring_at(due);
    bus.publish(&order).await.unwrap();
    // Scheduled (durably) once the record exists; then the service goes away.
    let db = context.database("expiration").await;
    let schedule = db.collection::<mongodb::bson::Document>("expirations");
    eventually("the expiration to be scheduled", WAIT, || async {
        let found = schedule
            .find_one(mongodb::bson::doc! {"_id": &order.id})
            .await
            .unwrap();
        found.map(|_| ())
    })
    .await;
    drop(first);
    assert!(expirations(&context).await.is_empty());

    let _restarted = spawn(&context).await;
    let fired = wait_for_expiration(&context, &order.id).await;
    assert!(fired >= due);
}

#[tokio::test]
async fn an_order_already_past_its_time_expires_at_once() {
    let context = TestContext::new();
    let _app = spawn(&context).await;
    let bus = context.bus().await;
    let order = order_expiring_at(SystemTime::now() - Duration::from_secs(5));
    bus.publish(&order).await.unwrap();
    wait_for_expiration(&context, &order.id).await;
}

#[tokio::test]
async fn a_backlog_of_orders_is_scheduled_in_batches_each_once_at_its_own_time() {
    let context = TestContext::new();
    let bus = context.bus().await;
    // Published before the service starts, the first 30 twice (a redelivery): the listener
    // finds a backlog and schedules what waits in a lane at once.
    let start = SystemTime::now() + Duration::from_secs(3_600);
    let orders: Vec<OrderCreated> = (0..150)
        .map(|i| order_expiring_at(start + Duration::from_secs(i)))
        .collect();
    for order in orders.iter().chain(&orders[..30]) {
        redeliver(&bus, order).await;
    }
    let _app = spawn(&context).await;
    context
        .consumer_settled("expiration-order-created", true)
        .await;
    let schedule = context
        .database("expiration")
        .await
        .collection::<mongodb::bson::Document>("expirations");
    for order in &orders {
        let stored = schedule
            .find_one(mongodb::bson::doc! { "_id": &order.id })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("order {} not scheduled", order.id));
        let at = stored.get_datetime("expiresAt").unwrap();
        assert_eq!(at.try_to_rfc3339_string().unwrap(), order.expires_at);
    }
    assert_eq!(
        schedule
            .count_documents(mongodb::bson::doc! {})
            .await
            .unwrap(),
        150
    );
}
