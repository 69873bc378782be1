//! Tickets and events: what it publishes, how it reacts to orders, and what survives a crash.

use common::events::{Event as _, OrderCancelled, Outbox, Subject, TicketRef};
use common::mongo::Transaction;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{TestApp, TestContext, WAIT, eventually, fake_user, redeliver};

use crate::helpers::{build, order_created, publish_poison, spawn_app, spawn_with_ticket};

fn order_cancelled(order_id: &str, ticket_id: &str) -> OrderCancelled {
    OrderCancelled {
        id: order_id.to_owned(),
        version: 1,
        ticket: TicketRef {
            id: ticket_id.to_owned(),
        },
    }
}

#[tokio::test]
async fn creates_and_updates_publish_versioned_events() {
    let app = spawn_app().await;
    let user = fake_user();
    let ticket = app.create_ticket(&user, "concert", 5.0).await;
    let id = ticket["id"].as_str().unwrap();
    app.put(
        &format!("/api/tickets/{id}"),
        Some(&user.cookie),
        json!({"title": "concert", "price": 10}),
    )
    .await;
    let events = app
        .context
        .events_where("two ticket events", |e| e.len() >= 2)
        .await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, "ticket:created");
    assert_eq!(
        events[0].1,
        json!({"id": id, "version": 0, "title": "concert", "price": 5.0, "userId": user.id})
    );
    assert_eq!(events[1].0, "ticket:updated");
    assert_eq!(events[1].1["version"], 1);
    assert_eq!(events[1].1["price"], 10.0);
}

#[tokio::test]
async fn an_order_reserves_the_ticket_and_its_cancellation_frees_it() {
    let (app, bus, user, id) = spawn_with_ticket().await;
    let order_id = ObjectId::new().to_hex();

    bus.publish(&order_created(&order_id, &id)).await.unwrap();
    let reserved = app
        .ticket_where(&id, "the ticket to be reserved", |t| {
            t["orderId"] == order_id.as_str()
        })
        .await;
    assert_eq!(reserved["version"], 1);

    let listed = app.get("/api/tickets", None).await.body;
    assert!(
        listed.as_array().unwrap().is_empty(),
        "a reserved ticket is not listed: {listed}"
    );
    let edit = app
        .put(
            &format!("/api/tickets/{id}"),
            Some(&user.cookie),
            json!({"title": "x", "price": 1}),
        )
        .await;
    edit.assert_error(StatusCode::BAD_REQUEST, "Cannot edit a reserved ticket");
    // Someone else learns nothing about the reservation: ownership is checked first.
    let stranger = app
        .put(
            &format!("/api/tickets/{id}"),
            Some(&fake_user().cookie),
            json!({"title": "x", "price": 1}),
        )
        .await;
    stranger.assert_error(StatusCode::UNAUTHORIZED, "Not authorized");

    bus.publish(&order_cancelled(&order_id, &id)).await.unwrap();
    let freed = app
        .ticket_where(&id, "the ticket to be freed", |t| {
            t.get("orderId").is_none()
        })
        .await;
    assert_eq!(freed["version"], 2);

    let events = app
        .context
        .events_where("ticket updates for both", |e| {
            e.iter().filter(|(s, _)| s == "ticket:updated").count() >= 2
        })
        .await;
    let updates: Vec<_> = events
        .iter()
        .filter(|(s, _)| s == "ticket:updated")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(updates[0]["orderId"], order_id.as_str());
    assert_eq!(updates[0]["version"], 1);
    assert!(updates[1].get("orderId").is_none());
    assert_eq!(updates[1]["version"], 2);
}

#[tokio::test]
async fn a_cancellation_before_its_creation_waits_and_duplicates_change_nothing() {
    let (app, bus, _, id) = spawn_with_ticket().await;
    let order_id = ObjectId::new().to_hex();

    // Out of order, and each one twice (a different message id defeats JetStream's dedup,
    // as a redelivery after a crash would).
    bus.publish(&order_cancelled(&order_id, &id)).await.unwrap();
    bus.publish(&order_created(&order_id, &id)).await.unwrap();
    redeliver(&bus, &order_created(&order_id, &id)).await;

    let freed = app
        .ticket_where(&id, "reserve then free, in version order", |t| {
            t["version"] == 2
        })
        .await;
    assert!(freed.get("orderId").is_none(), "{freed}");
    // Nothing more arrives: the duplicate was acknowledged and ignored.
    let ticket_events =
        |e: &[(String, Value)]| e.iter().filter(|(s, _)| s.starts_with("ticket:")).count();
    let events = app
        .context
        .events_where("three ticket events", |e| ticket_events(e) >= 3)
        .await;
    assert_eq!(ticket_events(&events), 3, "{events:?}");
    // The duplicate was acknowledged, not left to be retried into the dead letters.
    app.context
        .consumer_settled("tickets-order-created", true)
        .await;
    assert_eq!(
        app.get(&format!("/api/tickets/{id}"), None).await.body["version"],
        2
    );
}

#[tokio::test]
async fn orders_of_one_ticket_arriving_out_of_order_leave_it_held_by_the_active_one() {
    let (app, bus, _, id) = spawn_with_ticket().await;
    // Orders made `first`, cancelled it, then made `second` (one active order at a time).
    // Tickets hears of `second` before `first` (a redelivery after a server died, or two
    // processes sharing the consumer), then of `first`'s cancellation.
    let (first, second) = (ObjectId::new().to_hex(), ObjectId::new().to_hex());
    bus.publish(&order_created(&second, &id)).await.unwrap();
    app.ticket_where(&id, "held by the second order", |t| {
        t["orderId"] == second.as_str()
    })
    .await;
    bus.publish(&order_created(&first, &id)).await.unwrap();
    bus.publish(&order_cancelled(&first, &id)).await.unwrap();
    // Both applied (the cancellation, if it came first, waited for the creation), and the
    // second still holds it.
    app.context
        .consumer_settled("tickets-order-cancelled", false)
        .await;
    app.context
        .consumer_settled("tickets-order-created", true)
        .await;
    let seen = stored_orders(&app, &id).await;
    let first_seen: Vec<&Document> = seen
        .iter()
        .filter(|o| o.get_str("id") == Ok(first.as_str()))
        .collect();
    assert_eq!(first_seen.len(), 1, "{seen:?}");
    assert_eq!(first_seen[0].get_i64("v").unwrap(), 1, "{seen:?}");
    let ticket = app.get(&format!("/api/tickets/{id}"), None).await.body;
    assert_eq!(ticket["orderId"], second.as_str(), "{ticket}");
    // And the second's cancellation frees it.
    bus.publish(&order_cancelled(&second, &id)).await.unwrap();
    let freed = app
        .ticket_where(&id, "free once the second is cancelled", |t| {
            t.get("orderId").is_none()
        })
        .await;
    assert!(freed.get("orderId").is_none(), "{freed}");
}

/// The orders the ticket's document keeps, as stored.
async fn stored_orders(app: &TestApp, id: &str) -> Vec<Document> {
    let ticket = tickets_collection(app)
        .await
        .find_one(doc! { "_id": ObjectId::parse_str(id).unwrap() })
        .await
        .unwrap()
        .unwrap();
    ticket
        .get_array("orders")
        .unwrap()
        .iter()
        .map(|o| o.as_document().unwrap().clone())
        .collect()
}

async fn tickets_collection(app: &TestApp) -> mongodb::Collection<Document> {
    app.context.database("tickets").await.collection("tickets")
}

#[tokio::test]
async fn a_ticket_ordered_without_end_moves_old_orders_out_and_still_ignores_their_replays() {
    let (app, bus, _, id) = spawn_with_ticket().await;
    // More orders made and cancelled than a ticket document keeps (64), then one open.
    let cancelled: Vec<String> = (0..70).map(|_| ObjectId::new().to_hex()).collect();
    for order_id in &cancelled {
        bus.publish(&order_created(order_id, &id)).await.unwrap();
        bus.publish(&order_cancelled(order_id, &id)).await.unwrap();
    }
    let open = ObjectId::new().to_hex();
    bus.publish(&order_created(&open, &id)).await.unwrap();
    app.ticket_where(&id, "held by the last order", |t| {
        t["orderId"] == open.as_str()
    })
    .await;
    app.context
        .consumer_settled("tickets-order-cancelled", false)
        .await;
    app.context
        .consumer_settled("tickets-order-created", false)
        .await;
    let kept = stored_orders(&app, &id).await;
    assert_eq!(kept.len(), 64, "{kept:?}");
    let moved = app
        .context
        .database("tickets")
        .await
        .collection::<Document>("orders_seen")
        .count_documents(doc! { "ticketId": &id })
        .await
        .unwrap();
    assert_eq!(moved, 7, "the oldest cancelled orders moved out");
    // A replay of the first, long-cancelled order (a dead letter replayed, a redelivery) is
    // a duplicate: it does not take the ticket, and is acknowledged.
    redeliver(&bus, &order_created(&cancelled[0], &id)).await;
    bus.publish(&order_cancelled(&open, &id)).await.unwrap();
    let freed = app
        .ticket_where(&id, "free once the last order is cancelled", |t| {
            t.get("orderId").is_none()
        })
        .await;
    app.context
        .consumer_settled("tickets-order-created", true)
        .await;
    let after = app.get(&format!("/api/tickets/{id}"), None).await.body;
    assert!(after.get("orderId").is_none(), "{after}");
    assert_eq!(
        after["version"], freed["version"],
        "nothing changed after the replay"
    );
}

#[tokio::test]
async fn a_ticket_whose_orders_were_stored_apart_by_an_earlier_version_keeps_its_holder() {
    let (app, bus, _, id) = spawn_with_ticket().await;
    let holder = ObjectId::new().to_hex();
    // As an earlier version left it: reserved by `holder`, which only `orders_seen` records,
    // and no orders inside the ticket's document.
    let tickets = tickets_collection(&app).await;
    let oid = ObjectId::parse_str(&id).unwrap();
    tickets
        .update_one(
            doc! { "_id": oid },
            doc! {
                "$set": { "orderId": &holder, "version": 1_i64 },
                "$unset": { "orders": "" },
            },
        )
        .await
        .unwrap();
    app.context
        .database("tickets")
        .await
        .collection::<Document>("orders_seen")
        .insert_one(doc! { "_id": &holder, "ticketId": &id, "status": "created", "version": 0_i64 })
        .await
        .unwrap();
    // A second order's creation (a stale one, as after a redelivery) leaves the holder; the
    // holder's own creation redelivered is a duplicate; its cancellation frees the ticket.
    let other = ObjectId::new().to_hex();
    bus.publish(&order_created(&other, &id)).await.unwrap();
    redeliver(&bus, &order_created(&holder, &id)).await;
    app.context
        .consumer_settled("tickets-order-created", true)
        .await;
    let ticket = app.get(&format!("/api/tickets/{id}"), None).await.body;
    assert_eq!(ticket["orderId"], holder.as_str(), "{ticket}");
    assert_eq!(stored_orders(&app, &id).await.len(), 2);
    bus.publish(&order_cancelled(&holder, &id)).await.unwrap();
    app.ticket_where(
        &id,
        "held by the other order once the holder is cancelled",
        |t| t["orderId"] == other.as_str(),
    )
    .await;
}

/// What another tickets process does to the ticket `id` when it applies `order`'s creation
/// (reserved by it, version 1), written behind this process's back.
async fn reserved_elsewhere(app: &TestApp, id: &str, order: &str) {
    let written = tickets_collection(app)
        .await
        .update_one(
            doc! { "_id": ObjectId::parse_str(id).unwrap(), "version": 0_i64 },
            doc! { "$set": {
                "orderId": order,
                "version": 1_i64,
                // As a hand-made fix or a shell would write it: 32-bit integers.
                "applies": 1_i32,
                "orders": [{ "id": order, "v": 0_i32, "s": "created" }],
            } },
        )
        .await
        .unwrap();
    assert_eq!(written.matched_count, 1);
}

#[tokio::test]
async fn a_ticket_another_process_reserved_is_not_updated_from_what_this_one_remembers() {
    let (app, _, user, id) = spawn_with_ticket().await;
    // This process wrote the ticket last (it created it); another one reserves it.
    reserved_elsewhere(&app, &id, &ObjectId::new().to_hex()).await;
    let path = format!("/api/tickets/{id}");
    let response = app
        .put(
            &path,
            Some(&user.cookie),
            json!({"title": "new", "price": 9}),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        response.body
    );
    let ticket = app.get(&path, None).await.body;
    assert_eq!(ticket["title"], "concert", "{ticket}");
    assert_eq!(ticket["version"], 1, "{ticket}");
}

#[tokio::test]
async fn an_order_another_process_applied_is_found_when_its_cancellation_arrives_here() {
    let (app, bus, _, id) = spawn_with_ticket().await;
    let order = ObjectId::new().to_hex();
    // The creation was applied by another process; this one remembers the ticket free and
    // without orders, so the cancellation looks like it came before its creation.
    reserved_elsewhere(&app, &id, &order).await;
    bus.publish(&order_cancelled(&order, &id)).await.unwrap();
    let freed = app
        .ticket_where(&id, "free once the cancellation applies", |t| {
            t.get("orderId").is_none()
        })
        .await;
    assert_eq!(freed["version"], 2, "{freed}");
    app.context
        .consumer_settled("tickets-order-cancelled", true)
        .await;
}

#[tokio::test]
async fn a_malformed_order_event_is_dead_lettered_and_the_stream_keeps_flowing() {
    let (app, bus, _, id) = spawn_with_ticket().await;

    publish_poison(&bus).await;
    let order_id = ObjectId::new().to_hex();
    bus.publish(&order_created(&order_id, &id)).await.unwrap();

    app.ticket_where(&id, "the valid order after the poison one", |t| {
        t["orderId"] == order_id.as_str()
    })
    .await;
    let dead = eventually("a dead letter", WAIT, || async {
        let dead = app.context.dead_letters().await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].headers["Dlq-Reason"];
    assert!(reason.contains("unparseable"), "{reason}");
    assert_eq!(dead[0].headers["Dlq-Consumer"], "tickets-order-created");
}

#[tokio::test]
async fn an_event_committed_before_a_crash_is_published_after_restart() {
    let context = TestContext::new();
    // The first process commits but dies before its relay publishes: run it without the relay.
    let mut crashed = build(&context).await;
    crashed
        .tasks
        .retain(|(name, _)| !name.contains("outbox-relay"));
    let app = TestApp::serve(context.clone(), vec![crashed]).await;
    let user = fake_user();
    let ticket = app.create_ticket(&user, "concert", 5.0).await;
    drop(app);

    let db = context.database("tickets").await;
    let outbox = Outbox::new(&db, &["tickets"]);
    assert_eq!(outbox.pending().await.unwrap(), 1);
    let stored = db
        .collection::<Document>("tickets")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    let pending = stored.get_array("pendingEvents").unwrap();
    assert_eq!(
        pending[0].as_document().unwrap().get_str("subject"),
        Ok(Subject::TicketCreated.token()),
        "the event waits in the ticket's document"
    );
    assert!(
        context.events().await.is_empty(),
        "nothing was published before the crash"
    );

    // The restarted service finds the pending event and publishes it.
    let restarted = TestApp::serve(context.clone(), vec![build(&context).await]).await;
    let events = restarted
        .context
        .events_where("the pending event", |e| !e.is_empty())
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "ticket:created");
    assert_eq!(events[0].1["id"], ticket["id"]);
    eventually("the event to leave the document", WAIT, || async {
        (outbox.pending().await.unwrap() == 0).then_some(())
    })
    .await;
}

fn ticket_created(title: &str) -> common::events::TicketCreated {
    common::events::TicketCreated(common::events::TicketData {
        id: ObjectId::new().to_hex(),
        version: 0,
        title: title.to_owned(),
        price: 1.0,
        user_id: "seller".to_owned(),
        order_id: None,
    })
}

/// The titles of the ticket events published so far, in order.
fn titles(events: Vec<(String, Value)>) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| e["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_relay_sends_its_own_written_events_from_memory_and_the_scan_finds_the_rest() {
    let context = TestContext::new();
    let db = context.database("tickets").await;
    let bus = context.bus().await;
    let tickets = db.collection::<Document>("tickets");
    let outbox = Outbox::new(&db, &["tickets"]);
    outbox.ensure_indexes().await.unwrap();

    // Written by another process: only the scan finds it.
    let other = Outbox::new(&db, &["tickets"]);
    let elsewhere = doc! { "_id": ObjectId::new(), "title": "elsewhere" };
    other
        .insert(&tickets, &elsewhere, &ticket_created("elsewhere"))
        .await
        .unwrap();

    let id = ObjectId::new();
    let mine = doc! { "_id": id, "title": "mine" };
    outbox
        .insert(&tickets, &mine, &ticket_created("mine"))
        .await
        .unwrap();
    let missed = outbox
        .update(
            &tickets,
            id,
            doc! { "title": "not the title" },
            doc! { "title": "missed" },
            &ticket_created("missed"),
        )
        .await
        .unwrap();
    assert!(!missed, "a guard that does not match writes nothing");
    // An event written in a transaction that aborts is never sent.
    let mut aborted = Transaction::start(db.client()).await.unwrap();
    let event = outbox.event(&ticket_created("aborted")).unwrap();
    tickets
        .update_one(
            doc! { "_id": id },
            event.update(doc! { "title": "aborted" }).unwrap(),
        )
        .session(aborted.session())
        .await
        .unwrap();
    let refused = mongodb::error::Error::custom("refused");
    assert!(aborted.finish::<()>(Err(refused)).await.is_err());

    assert_eq!(outbox.relay_written(&bus).await.unwrap(), 1);
    assert_eq!(titles(context.events().await), ["mine"]);
    assert_eq!(
        outbox.relay_written(&bus).await.unwrap(),
        0,
        "nothing twice"
    );
    assert_eq!(outbox.pending().await.unwrap(), 1, "only the other's event");

    let updated = outbox
        .update(
            &tickets,
            id,
            doc! { "title": "mine" },
            doc! { "title": "mine, updated" },
            &ticket_created("mine, updated"),
        )
        .await
        .unwrap();
    assert!(updated);
    assert_eq!(outbox.relay_written(&bus).await.unwrap(), 1);

    // The scan sends what is left, wherever it was written, and nothing twice.
    assert_eq!(outbox.relay_once(&bus).await.unwrap(), 1);
    assert_eq!(
        titles(context.events().await),
        ["mine", "mine, updated", "elsewhere"]
    );
    assert_eq!(outbox.pending().await.unwrap(), 0);
    let stored = tickets.find_one(doc! { "_id": id }).await.unwrap().unwrap();
    assert_eq!(stored.get_str("title"), Ok("mine, updated"));
    assert_eq!(stored.get_array("pendingEvents").map(Vec::len), Ok(0));
}

#[tokio::test]
async fn events_an_earlier_version_left_unsent_in_its_outbox_collection_are_published() {
    let context = TestContext::new();
    let db = context.database("tickets").await;
    let bus = context.bus().await;
    // Before events lived in their documents, each had a document of its own in `outbox`,
    // marked sent with `sentAt`.
    let legacy = |title: &str, sent: Option<DateTime>| {
        let event = ticket_created(title);
        doc! {
            "_id": ObjectId::new(),
            "subject": Subject::TicketCreated.token(),
            "eventId": event.event_id(),
            "payload": serde_json::to_string(&event).unwrap(),
            "createdAt": DateTime::now(),
            "sentAt": sent,
        }
    };
    db.collection::<Document>("outbox")
        .insert_many([
            legacy("sent before the upgrade", Some(DateTime::now())),
            legacy("left unsent", None),
        ])
        .await
        .unwrap();

    let outbox = Outbox::new(&db, &["tickets"]);
    outbox.ensure_indexes().await.unwrap();
    outbox.ensure_indexes().await.unwrap();
    assert_eq!(
        outbox.pending().await.unwrap(),
        1,
        "adopted once, however many starts"
    );
    assert_eq!(outbox.relay_once(&bus).await.unwrap(), 1);
    assert_eq!(titles(context.events().await), ["left unsent"]);
    outbox.ensure_indexes().await.unwrap();
    assert_eq!(
        outbox.pending().await.unwrap(),
        0,
        "a sent event is not adopted again"
    );
}

#[tokio::test]
async fn another_process_scanning_leaves_the_events_this_one_sends_to_it() {
    let context = TestContext::new();
    let db = context.database("tickets").await;
    let tickets = db.collection::<Document>("tickets");
    let writer = Outbox::new(&db, &["tickets"]);
    let scanner = Outbox::new(&db, &["tickets"]);
    writer.ensure_indexes().await.unwrap();
    let (writer_bus, scanner_bus) = (context.bus().await, context.bus().await);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relays = [
        writer.clone().relay(writer_bus.clone()),
        scanner.clone().relay(scanner_bus.clone()),
    ]
    .map(|relay| tokio::spawn(relay(shutdown.clone())));

    // A second of changes, each event sent by its writer's relay and left in its document a
    // moment: the other relay scans about four times meanwhile.
    let id = ObjectId::new();
    let first = doc! { "_id": id, "version": 0 };
    writer
        .insert(&tickets, &first, &ticket_created("0"))
        .await
        .unwrap();
    for version in 1..=100 {
        let changed = writer
            .update(
                &tickets,
                id,
                doc! { "version": version - 1 },
                doc! { "version": version },
                &ticket_created(&version.to_string()),
            )
            .await
            .unwrap();
        assert!(changed);
        // Paces the writes over the scans; nothing waits on it.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    eventually("every event out of its document", WAIT, || async {
        (writer.pending().await.unwrap() == 0).then_some(())
    })
    .await;
    let published = |bus: &common::events::EventBus| -> u64 {
        bus.counters().subjects().iter().map(|s| s.published).sum()
    };
    assert_eq!(published(&writer_bus), 101);
    assert_eq!(
        published(&scanner_bus),
        0,
        "the other relay sent none of them again"
    );
    shutdown.cancel();
    for relay in relays {
        relay.await.unwrap().unwrap();
    }
}
