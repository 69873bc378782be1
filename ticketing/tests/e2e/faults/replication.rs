//! What the fault tests check: the orders replica of the tickets against the tickets, and
//! every write to the replica as it happened (its change stream), so that an update applied
//! twice or out of order shows even when a later one hides it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use test_support::{TestContext, eventually};

use super::{CONVERGE, PrivateStack, ROUNDS, TICKETS};

/// `(version, price)` of every record in `collection`.
pub(super) async fn versions(collection: &Collection<Document>) -> HashMap<ObjectId, (i64, f64)> {
    let records: Vec<Document> = collection
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    records
        .into_iter()
        .map(|record| {
            let version = match record.get("version") {
                Some(Bson::Int64(v)) => *v,
                Some(Bson::Int32(v)) => i64::from(*v),
                other => panic!("bad version {other:?} in {record}"),
            };
            let price = record.get_f64("price").unwrap();
            (record.get_object_id("_id").unwrap(), (version, price))
        })
        .collect()
}

/// The tickets service's tickets and the orders service's replica of them.
pub(super) struct Replication {
    tickets: Collection<Document>,
    replica: Collection<Document>,
}

impl Replication {
    pub(super) async fn new(stack: &PrivateStack) -> Self {
        Self {
            tickets: stack.database("tickets").await.collection("tickets"),
            replica: stack.database("orders").await.collection("tickets"),
        }
    }

    /// Ticket updates the replica has applied so far (the sum of its versions).
    pub(super) async fn applied(&self) -> i64 {
        versions(&self.replica).await.values().map(|(v, _)| v).sum()
    }

    /// Tickets whose replica is missing or differs from the ticket in version or price.
    pub(super) async fn stale(&self) -> Vec<ObjectId> {
        let replica = versions(&self.replica).await;
        versions(&self.tickets)
            .await
            .into_iter()
            .filter(|(id, ticket)| replica.get(id) != Some(ticket))
            .map(|(id, _)| id)
            .collect()
    }

    /// Waits until no replica is stale; returns how long that took.
    pub(super) async fn converge(&self, what: &str) -> Duration {
        let started = Instant::now();
        eventually(what, CONVERGE, || async {
            self.stale().await.is_empty().then_some(())
        })
        .await;
        started.elapsed()
    }

    /// How the replica compares with the tickets once the load is over.
    pub(super) async fn tally(&self, context: &TestContext) -> Tally {
        let tickets = versions(&self.tickets).await;
        let replica = versions(&self.replica).await;
        let mut tally = Tally {
            tickets: tickets.len(),
            dead_letters: context.dead_letters().await.len(),
            ..Tally::default()
        };
        for (id, ticket) in &tickets {
            let copy = replica.get(id);
            tally.stale += usize::from(copy != Some(ticket));
            // A missing replica lacks the creation (version 0) as well as every update.
            tally.lost += ticket.0 - copy.map_or(-1, |(version, _)| *version).min(ticket.0);
            tally.wrong_version += usize::from(copy.is_none_or(|(version, _)| *version != ROUNDS));
        }
        tally
    }
}

/// Figures of a replica after a fault; all zero when nothing went wrong.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Tally {
    tickets: usize,
    /// Replicas that differ from their ticket (version or price) or are missing.
    stale: usize,
    /// Ticket events (creations and updates) the replica lacks.
    lost: i64,
    /// Replicas whose version is not the number of updates: one skipped. (One applied twice
    /// changes nothing the guard lets through; [`Applies`] sees it as it happens.)
    wrong_version: usize,
    dead_letters: usize,
}

impl Tally {
    #[track_caller]
    pub(super) fn assert_exact(&self) {
        let exact = Tally {
            tickets: TICKETS,
            ..Tally::default()
        };
        assert_eq!(self, &exact, "the replica did not converge exactly");
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "events lost {}, stale replicas {}/{}, versions other than {ROUNDS} {}, dead \
             letters {}",
            self.lost, self.stale, self.tickets, self.wrong_version, self.dead_letters
        )
    }
}

/// Every write to the orders replica of the tickets, in the order MongoDB made them, read from
/// its change stream while a test runs: `(ticket, version written)`.
pub(super) struct Applies {
    writes: std::sync::Arc<std::sync::Mutex<Vec<(ObjectId, i64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Applies {
    /// Starts following the replica's writes; they are seen from this moment on.
    pub(super) async fn follow(stack: &PrivateStack) -> Self {
        let replica: Collection<Document> = stack.database("orders").await.collection("tickets");
        let mut changes = replica.watch().await.unwrap();
        let writes: std::sync::Arc<std::sync::Mutex<Vec<(ObjectId, i64)>>> =
            std::sync::Arc::default();
        let seen = std::sync::Arc::clone(&writes);
        let task = tokio::spawn(async move {
            while let Some(change) = changes.try_next().await.unwrap() {
                let Some(id) = change
                    .document_key
                    .and_then(|key| key.get_object_id("_id").ok())
                else {
                    continue;
                };
                // An insert or replace carries the document, an update what it set.
                let version = change
                    .full_document
                    .as_ref()
                    .and_then(|document| document.get("version").cloned())
                    .or_else(|| {
                        change
                            .update_description
                            .and_then(|update| update.updated_fields.get("version").cloned())
                    });
                let version = match version {
                    Some(Bson::Int64(version)) => version,
                    Some(Bson::Int32(version)) => i64::from(version),
                    _ => continue,
                };
                seen.lock().unwrap().push((id, version));
            }
        });
        Self { writes, task }
    }

    /// Stops following; returns how many writes it saw, failing if any wrote a version that
    /// was not newer than the record's previous one: an update applied twice, or an older one
    /// applied over a newer.
    pub(super) fn finish(self) -> usize {
        self.task.abort();
        let writes = self.writes.lock().unwrap();
        let mut last: HashMap<ObjectId, i64> = HashMap::new();
        let mut again = Vec::new();
        for (id, version) in writes.iter() {
            if let Some(previous) = last.insert(*id, *version)
                && previous >= *version
            {
                again.push(format!("{id}: v{version} written after v{previous}"));
            }
        }
        assert!(again.is_empty(), "updates applied again: {again:#?}");
        writes.len()
    }
}

/// Distinct ticket updates (ticket, version) in the event stream.
pub(super) async fn published_updates(context: &TestContext) -> usize {
    let published: std::collections::HashSet<(String, i64)> = context
        .events()
        .await
        .into_iter()
        .filter(|(subject, _)| subject == "ticket:updated")
        .map(|(_, event)| {
            let id = event["id"].as_str().unwrap().to_owned();
            (id, event["version"].as_i64().unwrap())
        })
        .collect();
    published.len()
}
