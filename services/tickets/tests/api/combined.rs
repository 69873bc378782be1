//! Combined inserts (`common::mongo::Inserts`, under the outbox's inserts): concurrent
//! creations share insert commands, and each caller still learns its own document's outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::mongo::{Inserts, is_duplicate_key};
use futures::future::join_all;
use mongodb::bson::{Document, doc, oid::ObjectId};
use mongodb::error::ErrorKind;
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use reqwest::StatusCode;
use serde_json::json;
use test_support::{TestContext, fake_user};

use crate::helpers::spawn_app;
use test_support::WAIT;

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

/// `callers` concurrent inserts, `taken` of them with a key already stored (the same key for
/// none of them): each duplicate must fail alone, naming its own key, and every other
/// document must be stored. Returns the insert commands they took.
async fn insert_at_once(callers: usize, taken: &[usize]) -> usize {
    let context = TestContext::new();
    let (collection, commands) = counted_collection(&context).await;
    for n in taken {
        collection
            .insert_one(doc! { "_id": format!("taken-{n}"), "n": -1_i64 })
            .await
            .unwrap();
    }
    let before = commands.load(Ordering::Relaxed);
    let inserts = Inserts::new(&collection);
    let all = join_all((0..callers).map(|n| {
        let inserts = inserts.clone();
        let id = if taken.contains(&n) {
            format!("taken-{n}")
        } else {
            format!("doc-{n}")
        };
        async move { inserts.insert(doc! { "_id": id, "n": n as i64 }).await }
    }));
    // A lost outcome would hang here: fail instead.
    let outcomes = tokio::time::timeout(WAIT, all)
        .await
        .expect("every caller gets its outcome");

    for (n, outcome) in outcomes.iter().enumerate() {
        if taken.contains(&n) {
            let error = outcome.as_ref().expect_err("a taken key must fail");
            assert!(is_duplicate_key(error), "caller {n}: {error}");
            let ErrorKind::InsertMany(failure) = &*error.kind else {
                panic!("caller {n}: not a combined insert's failure: {error}");
            };
            let own: Vec<&str> = failure
                .write_errors
                .iter()
                .flatten()
                .map(|e| e.message.as_str())
                .collect();
            assert_eq!(own.len(), 1, "caller {n} gets its own error alone: {own:?}");
            assert!(
                own[0].contains(&format!("\"taken-{n}\"")),
                "caller {n} is told about its own key: {own:?}"
            );
        } else {
            assert!(outcome.is_ok(), "caller {n}: {outcome:?}");
        }
    }
    let stored = collection.count_documents(doc! {}).await.unwrap();
    assert_eq!(stored, callers as u64);
    let kept = collection
        .count_documents(doc! { "_id": { "$regex": "^taken-" }, "n": -1_i64 })
        .await
        .unwrap();
    assert_eq!(
        kept,
        taken.len() as u64,
        "the first holders keep their keys"
    );
    commands.load(Ordering::Relaxed) - before
}

#[tokio::test]
async fn concurrent_inserts_share_commands_and_a_duplicate_fails_only_its_own_caller() {
    const CALLERS: usize = 200;
    let sent = insert_at_once(CALLERS, &[37, 151]).await;
    assert!(
        sent <= CALLERS / 10,
        "{CALLERS} concurrent inserts took {sent} insert commands"
    );
}

#[tokio::test]
async fn more_callers_than_one_command_takes_are_all_written() {
    // Beyond the 1,000 documents one command takes: the rest go in later commands, and
    // no caller is left waiting.
    const CALLERS: usize = 2_500;
    let sent = insert_at_once(CALLERS, &[5, 1_999, 2_499]).await;
    assert!(
        (3..=CALLERS / 100).contains(&sent),
        "{CALLERS} concurrent inserts took {sent} insert commands"
    );
}

#[tokio::test]
async fn a_lone_insert_is_a_command_of_its_own() {
    let context = TestContext::new();
    let (collection, commands) = counted_collection(&context).await;
    let inserts = Inserts::new(&collection);
    for n in 0..3_i64 {
        let before = commands.load(Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(5), inserts.insert(doc! { "n": n }))
            .await
            .expect("a lone insert waits for no batch")
            .unwrap();
        assert_eq!(commands.load(Ordering::Relaxed) - before, 1);
    }
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 3);
}

#[tokio::test]
async fn tickets_created_at_once_are_each_stored_as_asked_and_published_once() {
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
        ids.push((n, ticket["id"].as_str().unwrap().to_owned()));
    }
    let tickets = app
        .context
        .database("tickets")
        .await
        .collection::<Document>("tickets");
    assert_eq!(
        tickets.count_documents(doc! {}).await.unwrap(),
        CREATES as u64
    );
    for (n, id) in &ids {
        let stored = tickets
            .find_one(doc! { "_id": ObjectId::parse_str(id).unwrap() })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("ticket {id} of request {n} is stored"));
        assert_eq!(stored.get_str("title").unwrap(), format!("concert {n}"));
    }
    // Each creation's event once: counted where it is published (the stream would drop a
    // repeat with the same id), and every id in the stream.
    test_support::metrics::assert_published_exactly(
        &app,
        "tickets",
        "ticket:created",
        CREATES as u64,
    )
    .await;
    let events = app.context.events().await;
    for (_, id) in &ids {
        let published = events
            .iter()
            .filter(|(subject, data)| subject == "ticket:created" && data["id"] == *id)
            .count();
        assert_eq!(published, 1, "ticket {id} published {published} times");
    }
}
