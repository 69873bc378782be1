//! Combined inserts (`common::mongo::Inserts`, under the outbox's inserts): concurrent
//! creations share insert commands, and each caller still learns its own document's outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::mongo::{Inserts, is_duplicate_key};
use futures::future::join_all;
use mongodb::bson::{Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use reqwest::StatusCode;
use serde_json::json;
use test_support::{TestContext, fake_user};

use crate::helpers::{events_where, spawn_app};

/// A collection of this test on a client that counts the insert commands sent to it.
async fn counted_collection(
    context: &TestContext,
) -> (mongodb::Collection<Document>, Arc<AtomicUsize>) {
    let commands = Arc::new(AtomicUsize::new(0));
    let mut options = ClientOptions::parse(&context.mongo_url).await.unwrap();
    let counter = Arc::clone(&commands);
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event
            && started.command_name == "insert"
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    let collection = client
        .database(&format!("{}_combined", context.namespace))
        .collection("documents");
    (collection, commands)
}

#[tokio::test]
async fn concurrent_inserts_share_commands_and_a_duplicate_fails_only_its_own_caller() {
    let context = TestContext::new();
    let (collection, commands) = counted_collection(&context).await;
    collection
        .insert_one(doc! { "_id": "taken", "n": -1_i64 })
        .await
        .unwrap();
    let before = commands.load(Ordering::Relaxed);
    let inserts = Inserts::new(&collection);

    const CALLERS: usize = 200;
    // Two callers bring the key that is already taken; everyone else a fresh one.
    let taken = [37, 151];
    let outcomes = join_all((0..CALLERS).map(|n| {
        let inserts = inserts.clone();
        let id = if taken.contains(&n) {
            "taken".to_owned()
        } else {
            format!("doc-{n}")
        };
        async move { inserts.insert(doc! { "_id": id, "n": n as i64 }).await }
    }))
    .await;

    for (n, outcome) in outcomes.iter().enumerate() {
        if taken.contains(&n) {
            let error = outcome.as_ref().expect_err("a taken key must fail");
            assert!(is_duplicate_key(error), "caller {n}: {error}");
        } else {
            assert!(outcome.is_ok(), "caller {n}: {outcome:?}");
        }
    }
    let stored = collection.count_documents(doc! {}).await.unwrap();
    assert_eq!(stored, (CALLERS - taken.len() + 1) as u64);
    let kept = collection
        .find_one(doc! { "_id": "taken" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.get_i64("n").unwrap(),
        -1,
        "the first holder of the key kept it"
    );

    let sent = commands.load(Ordering::Relaxed) - before;
    assert!(
        sent <= CALLERS / 10,
        "{CALLERS} concurrent inserts took {sent} insert commands"
    );
}

#[tokio::test]
async fn a_lone_insert_goes_out_at_once_in_its_own_command() {
    let context = TestContext::new();
    let (collection, commands) = counted_collection(&context).await;
    let inserts = Inserts::new(&collection);
    for n in 0..3_i64 {
        let before = commands.load(Ordering::Relaxed);
        inserts.insert(doc! { "n": n }).await.unwrap();
        assert_eq!(commands.load(Ordering::Relaxed) - before, 1);
    }
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 3);
}

#[tokio::test]
async fn tickets_created_at_once_are_each_stored_and_published_once() {
    let app = spawn_app().await;
    let cookie = fake_user().cookie;
    const CREATES: usize = 60;
    let responses = join_all((0..CREATES).map(|n| {
        app.post(
            "/api/tickets",
            Some(&cookie),
            json!({ "title": format!("concert {n}"), "price": n + 1 }),
        )
    }))
    .await;
    let mut ids = Vec::with_capacity(CREATES);
    for (n, response) in responses.iter().enumerate() {
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{n}: {:?}",
            response.body
        );
        let ticket: serde_json::Value = response.json();
        assert_eq!(
            ticket["title"],
            format!("concert {n}"),
            "each caller gets its own"
        );
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    let created = |events: &[(String, serde_json::Value)]| {
        events
            .iter()
            .filter(|(subject, _)| subject == "ticket:created")
            .count()
    };
    let events = events_where(&app, "every creation published", |events| {
        created(events) >= CREATES
    })
    .await;
    assert_eq!(created(&events), CREATES, "no creation published twice");
    for id in &ids {
        let published = events
            .iter()
            .filter(|(subject, data)| subject == "ticket:created" && data["id"] == *id)
            .count();
        assert_eq!(published, 1, "ticket {id} published {published} times");
    }
    let stored = app
        .context
        .database("tickets")
        .await
        .collection::<Document>("tickets")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored, CREATES as u64);
}
