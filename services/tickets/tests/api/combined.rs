//! Combined writes (`common::mongo::Inserts` and `Updates`, under the outbox's inserts and
//! guarded updates) and reads (`Reads`): concurrent creations, changes and reads share
//! commands, and each caller still learns its own write's outcome or gets its own document.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::mongo::{Inserts, Reads, Updates, is_duplicate_key};
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

/// A collection of this test on a client that counts, for each of `names`, the commands of
/// that name sent to it.
async fn counted_collection<const N: usize>(
    context: &TestContext,
    names: [&'static str; N],
) -> (mongodb::Collection<Document>, [Arc<AtomicUsize>; N]) {
    let counters: [Arc<AtomicUsize>; N] = std::array::from_fn(|_| Arc::new(AtomicUsize::new(0)));
    let mut options = ClientOptions::parse(&context.mongo_url).await.unwrap();
    let counted = counters.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event
            && let Some(n) = names.iter().position(|name| started.command_name == *name)
        {
            counted[n].fetch_add(1, Ordering::Relaxed);
        }
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    let collection = client
        .database(&format!("{}_combined", context.namespace))
        .collection("documents");
    (collection, counters)
}

/// `callers` concurrent inserts, `taken` of them with a key already stored (the same key for
/// none of them): each duplicate must fail alone, naming its own key, and every other
/// document must be stored. Returns the insert commands they took.
async fn insert_at_once(callers: usize, taken: &[usize]) -> usize {
    let context = TestContext::new();
    let (collection, [commands]) = counted_collection(&context, ["insert"]).await;
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
    let (collection, [commands]) = counted_collection(&context, ["insert"]).await;
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
async fn concurrent_guarded_updates_share_commands_and_each_caller_learns_its_own_match() {
    const DOCUMENTS: usize = 150;
    // Callers 0..150 update document n; 150..200 race them for documents 0..50 with the same
    // guard; 200..240 name documents that do not exist.
    const CALLERS: usize = 240;
    let context = TestContext::new();
    let (collection, [commands]) = counted_collection(&context, ["update"]).await;
    let stored: Vec<Document> = (0..DOCUMENTS)
        .map(|n| doc! { "_id": n as i64, "version": 0_i64 })
        .collect();
    collection.insert_many(stored).await.unwrap();
    let before = commands.load(Ordering::Relaxed);
    let updates = Updates::new(&collection);
    let target =
        |caller: usize| (caller % DOCUMENTS) as i64 + if caller >= 200 { 1_000 } else { 0 };
    let all = join_all((0..CALLERS).map(|caller| {
        let updates = updates.clone();
        async move {
            updates
                .update(
                    target(caller),
                    doc! { "version": 0_i64 },
                    doc! { "$set": { "version": 1_i64, "by": caller as i64 } },
                )
                .await
        }
    }));
    let outcomes = tokio::time::timeout(WAIT, all)
        .await
        .expect("every caller gets its outcome");
    let sent = commands.load(Ordering::Relaxed) - before;

    for id in 0..DOCUMENTS as i64 {
        let stored = collection
            .find_one(doc! { "_id": id })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.get_i64("version").unwrap(), 1, "document {id}");
        let by = usize::try_from(stored.get_i64("by").unwrap()).unwrap();
        let callers: Vec<usize> = (0..CALLERS).filter(|&c| target(c) == id).collect();
        for caller in callers {
            let matched = *outcomes[caller]
                .as_ref()
                .unwrap_or_else(|e| panic!("caller {caller}: {e}"));
            assert_eq!(
                matched,
                caller == by,
                "caller {caller} of document {id} (written by {by}) learns its own match"
            );
        }
    }
    for (caller, outcome) in outcomes.iter().enumerate().skip(200) {
        assert!(
            matches!(outcome, Ok(false)),
            "caller {caller} named no document: {outcome:?}"
        );
    }
    assert_eq!(
        collection.count_documents(doc! {}).await.unwrap(),
        DOCUMENTS as u64,
        "a miss inserts nothing"
    );
    assert!(
        sent <= CALLERS / 10,
        "{CALLERS} concurrent updates took {sent} update commands"
    );
}

#[tokio::test]
async fn a_lone_guarded_update_is_a_command_of_its_own() {
    let context = TestContext::new();
    let (collection, [commands]) = counted_collection(&context, ["update"]).await;
    collection
        .insert_one(doc! { "_id": 1_i64, "version": 0_i64 })
        .await
        .unwrap();
    let updates = Updates::new(&collection);
    for version in 0..3_i64 {
        let before = commands.load(Ordering::Relaxed);
        let matched = tokio::time::timeout(
            Duration::from_secs(5),
            updates.update(
                1_i64,
                doc! { "version": version },
                doc! { "$set": { "version": version + 1 } },
            ),
        )
        .await
        .expect("a lone update waits for no batch")
        .unwrap();
        assert!(matched, "version {version}");
        assert_eq!(commands.load(Ordering::Relaxed) - before, 1);
    }
    let stale = updates
        .update(
            1_i64,
            doc! { "version": 0_i64 },
            doc! { "$set": { "version": 9_i64 } },
        )
        .await
        .unwrap();
    assert!(!stale, "a guard on an old version misses");
    let stored = collection.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(stored.get_i64("version").unwrap(), 3);
}

#[tokio::test]
async fn concurrent_reads_share_commands_and_each_caller_gets_its_own_document() {
    const DOCUMENTS: usize = 150;
    // Callers 0..150 read document n; 150..200 read documents 0..50 again; 200..240 name
    // documents that do not exist.
    const CALLERS: usize = 240;
    let context = TestContext::new();
    let (collection, [commands, get_mores]) =
        counted_collection(&context, ["find", "getMore"]).await;
    let ids: Vec<ObjectId> = (0..DOCUMENTS).map(|_| ObjectId::new()).collect();
    let stored: Vec<Document> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| doc! { "_id": id, "n": n as i64 })
        .collect();
    collection.insert_many(stored).await.unwrap();
    let missing: Vec<ObjectId> = (0..CALLERS - 200).map(|_| ObjectId::new()).collect();
    let asked = |caller: usize| match caller {
        0..200 => ids[caller % DOCUMENTS],
        _ => missing[caller - 200],
    };
    let before = commands.load(Ordering::Relaxed);
    let reads = Reads::<Document>::new(&collection);
    let all = join_all((0..CALLERS).map(|caller| {
        let reads = reads.clone();
        async move { reads.find(asked(caller)).await }
    }));
    let found = tokio::time::timeout(WAIT, all)
        .await
        .expect("every caller gets its document");
    let sent = commands.load(Ordering::Relaxed) - before;

    for (caller, found) in found.iter().enumerate() {
        let found = found
            .as_ref()
            .unwrap_or_else(|e| panic!("caller {caller}: {e}"));
        if caller < 200 {
            let document = found
                .as_ref()
                .unwrap_or_else(|| panic!("caller {caller} found nothing"));
            assert_eq!(document.get_object_id("_id").unwrap(), asked(caller));
            assert_eq!(
                document.get_i64("n").unwrap(),
                (caller % DOCUMENTS) as i64,
                "caller {caller}"
            );
        } else {
            assert!(found.is_none(), "caller {caller} named no document");
        }
    }
    assert!(
        sent <= CALLERS / 10,
        "{CALLERS} concurrent reads took {sent} find commands"
    );
    // Reads that all find their document: the reply still closes its cursor.
    let all = join_all(ids.iter().map(|&id| {
        let reads = reads.clone();
        async move { reads.find(id).await }
    }));
    let found = tokio::time::timeout(WAIT, all)
        .await
        .expect("every caller gets its document");
    assert!(found.iter().all(|f| matches!(f, Ok(Some(_)))), "{found:?}");
    assert_eq!(
        get_mores.load(Ordering::Relaxed),
        0,
        "a combined read's reply holds all its documents"
    );

    // A lone read goes out at once, and sees what was written before it was asked.
    collection
        .update_one(doc! { "_id": ids[0] }, doc! { "$set": { "n": -1_i64 } })
        .await
        .unwrap();
    let before = commands.load(Ordering::Relaxed);
    let lone = tokio::time::timeout(Duration::from_secs(5), reads.find(ids[0]))
        .await
        .expect("a lone read waits for no batch")
        .unwrap()
        .unwrap();
    assert_eq!(lone.get_i64("n").unwrap(), -1);
    assert_eq!(commands.load(Ordering::Relaxed) - before, 1);
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
