//! The replica of tickets: versioned, idempotent, order-independent, shared by replicas.

use bytes::Bytes;
use common::events::{Subject, TicketCreated, TicketUpdated};
use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use test_support::{TestApp, TestContext, eventually};

use crate::helpers::{build, publish_update, replica_at, replicated_ticket, spawn_app, ticket};
use test_support::WAIT;

#[tokio::test]
async fn ticket_events_build_the_replica() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let id = replicated_ticket(&app, &bus, 5.0).await;
    publish_update(&bus, &id, 1, 10.0).await;
    let replica = replica_at(&app, &id, 1).await;
    assert_eq!(replica["price"], 10.0);
    assert_eq!(replica["title"], "concert v1");
}

#[tokio::test]
async fn version_2_before_version_1_waits_for_its_predecessor() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let id = replicated_ticket(&app, &bus, 5.0).await;
    publish_update(&bus, &id, 2, 15.0).await;
    publish_update(&bus, &id, 1, 10.0).await;
    let replica = replica_at(&app, &id, 2).await;
    assert_eq!(replica["price"], 15.0, "v2's price wins, not v1's");
}

#[tokio::test]
async fn duplicates_and_old_versions_are_ignored() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    let id = replicated_ticket(&app, &bus, 5.0).await;
    publish_update(&bus, &id, 1, 10.0).await;
    replica_at(&app, &id, 1).await;
    // Replays with fresh message ids (as after a consumer crash): once the consumer has handled
    // them, the replica is still v1 at 10. Then a marker update still applies on top.
    for (subject, payload) in [
        (
            Subject::TicketCreated,
            serde_json::to_vec(&TicketCreated(ticket(&id, 0, 99.0))).unwrap(),
        ),
        (
            Subject::TicketUpdated,
            serde_json::to_vec(&TicketUpdated(ticket(&id, 1, 99.0))).unwrap(),
        ),
    ] {
        bus.publish_bytes(
            bus.subject(subject),
            async_nats::HeaderMap::new(),
            Bytes::from(payload),
        )
        .await
        .unwrap();
    }
    app.context
        .consumer_settled("orders-ticket-created-and-ticket-updated", false)
        .await;
    let replayed = app
        .get(&format!("/api/orders/tickets/{id}"), None)
        .await
        .body;
    assert_eq!(replayed["version"], 1, "{replayed}");
    assert_eq!(
        replayed["price"], 10.0,
        "a replayed old version was applied"
    );
    publish_update(&bus, &id, 2, 20.0).await;
    let replica = replica_at(&app, &id, 2).await;
    assert_eq!(replica["price"], 20.0);
    assert!(app.context.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_malformed_ticket_event_is_dead_lettered_and_later_events_still_apply() {
    let app = spawn_app().await;
    let bus = app.context.bus().await;
    for garbage in [
        &b"not json"[..],
        br#"{"id":"x"}"#,
        br#"{"id":"nope","version":0,"title":"t","price":1,"userId":"u"}"#,
    ] {
        bus.publish_bytes(
            bus.subject(Subject::TicketCreated),
            async_nats::HeaderMap::new(),
            Bytes::from_static(garbage),
        )
        .await
        .unwrap();
    }
    let id = replicated_ticket(&app, &bus, 5.0).await;
    assert_eq!(
        app.get(&format!("/api/orders/tickets/{id}"), None)
            .await
            .status,
        StatusCode::OK
    );
    // The first two cannot be parsed; the third parses but names no ticket, so it fails on
    // every delivery: it is retried, not lost. Only the unparseable ones are dead letters now.
    let dead = eventually("two dead letters", WAIT, || async {
        let dead = app.context.dead_letters().await;
        (dead.len() >= 2).then_some(dead)
    })
    .await;
    assert!(
        dead.iter()
            .all(|d| d.headers["Dlq-Reason"].contains("unparseable")),
        "{dead:?}"
    );
}

#[tokio::test]
async fn two_instances_share_one_consumer_and_the_replica_converges() {
    let context = TestContext::new();
    let first = TestApp::serve(context.clone(), vec![build(&context).await]).await;
    let second = TestApp::serve(context.clone(), vec![build(&context).await]).await;
    let bus = context.bus().await;
    let ids: Vec<String> = (0..40).map(|_| ObjectId::new().to_hex()).collect();
    for id in &ids {
        bus.publish(&TicketCreated(ticket(id, 0, 5.0)))
            .await
            .unwrap();
    }
    for version in 1..=3 {
        for id in &ids {
            publish_update(&bus, id, version, 5.0 + version as f64).await;
        }
    }
    for id in &ids {
        let replica = replica_at(&first, id, 3).await;
        assert_eq!(replica["price"], 8.0);
        assert_eq!(
            second
                .get(&format!("/api/orders/tickets/{id}"), None)
                .await
                .body["version"],
            3
        );
    }
    // One durable consumer per event, not one per instance.
    let stream = bus.jetstream().get_stream(bus.stream_name()).await.unwrap();
    let mut names: Vec<String> = Vec::new();
    let mut consumers = stream.consumer_names();
    while let Some(name) = futures::StreamExt::next(&mut consumers).await {
        names.push(name.unwrap());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "orders-expiration-complete",
            "orders-payment-created",
            "orders-payment-refunded",
            "orders-ticket-created-and-ticket-updated",
        ]
    );
}

#[tokio::test]
async fn a_consumer_left_with_older_settings_is_brought_to_the_current_ones() {
    let context = TestContext::new();
    let bus = context.bus().await;
    let stream = bus.jetstream().get_stream(bus.stream_name()).await.unwrap();
    let name = "orders-ticket-created-and-ticket-updated";
    // As an older version left it: a small in-flight limit and the server's default ack wait.
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subjects: vec![
                bus.subject(Subject::TicketCreated),
                bus.subject(Subject::TicketUpdated),
            ],
            max_ack_pending: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let app = TestApp::serve(context.clone(), vec![build(&context).await]).await;
    let bus_for_info = bus.clone();
    let config = eventually("the listener to update its consumer", WAIT, || {
        let bus = bus_for_info.clone();
        async move {
            let stream = bus.jetstream().get_stream(bus.stream_name()).await.ok()?;
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(name).await.ok()?;
            let config = consumer.info().await.ok()?.config.clone();
            (config.max_ack_pending == common::events::listener::MAX_ACK_PENDING).then_some(config)
        }
    })
    .await;
    assert_eq!(config.ack_wait, common::events::listener::ACK_WAIT);
    // And it still delivers, to the same durable consumer.
    replicated_ticket(&app, &bus, 7.5).await;
}
