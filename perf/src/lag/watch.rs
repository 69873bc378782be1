//! Seeing versions land in the orders replica on its MongoDB change stream, instead of by
//! polling the orders API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use futures::StreamExt as _;
use mongodb::bson::{Document, doc};

/// When each version of each ticket landed in the orders replica, read from the replica's
/// change stream: no polling load on the system being measured.
pub(super) struct ReplicaWatch {
    client: mongodb::Client,
    seen: Arc<Seen>,
    follower: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    tickets: std::sync::Mutex<HashMap<String, Landed>>,
    /// Why the change stream ended, if it did: every later lag would be wrong.
    ended: std::sync::Mutex<Option<String>>,
}

/// One ticket's versions as they landed, and its waiters' wake-up.
#[derive(Default)]
struct Landed {
    versions: Vec<(i64, Instant)>,
    changed: Arc<tokio::sync::Notify>,
}

impl Drop for ReplicaWatch {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl ReplicaWatch {
    pub(super) async fn start(mongo_url: &str, orders_db: &str) -> anyhow::Result<Self> {
        let client = mongodb::Client::with_uri_str(mongo_url)
            .await
            .context("connect to the orders replica's MongoDB")?;
        // Inserts carry the version in the document, updates in the changed fields.
        let version = doc! { "$ifNull": [
            "$updateDescription.updatedFields.version",
            "$fullDocument.version",
        ] };
        let mut changes = client
            .database(orders_db)
            .collection::<Document>("tickets")
            .watch()
            .pipeline([doc! { "$project": { "documentKey": 1, "version": version } }])
            .await
            .context("watch the orders replica")?
            .with_type::<Document>();
        let seen = Arc::new(Seen::default());
        let follower = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                let why = loop {
                    let change = match changes.next().await {
                        Some(Ok(change)) => change,
                        Some(Err(error)) => break error.to_string(),
                        None => break "closed by the server".to_owned(),
                    };
                    let at = Instant::now();
                    let id = change
                        .get_document("documentKey")
                        .ok()
                        .and_then(|key| key.get_object_id("_id").ok());
                    let version = change.get_i64("version").ok();
                    if let (Some(id), Some(version)) = (id, version)
                        && let Ok(mut tickets) = seen.tickets.lock()
                    {
                        let landed = tickets.entry(id.to_hex()).or_default();
                        landed.versions.push((version, at));
                        landed.changed.notify_waiters();
                    }
                };
                if let Ok(mut ended) = seen.ended.lock() {
                    *ended = Some(why);
                }
                // Waiters give up at once rather than at their deadline.
                if let Ok(tickets) = seen.tickets.lock() {
                    for landed in tickets.values() {
                        landed.changed.notify_waiters();
                    }
                }
            }
        });
        Ok(Self {
            client,
            seen,
            follower,
        })
    }

    /// Stops following and shuts the client down.
    pub(super) async fn close(mut self) {
        self.follower.abort();
        let _ = (&mut self.follower).await;
        crate::client::shut_down(&self.client).await;
    }

    /// Why the change stream ended, if it did (the lags measured after that are not real).
    pub(super) fn ended(&self) -> Option<String> {
        self.seen.ended.lock().ok().and_then(|ended| ended.clone())
    }

    /// When the replica first held `version` (or a later one) of ticket `id`; `None` if not
    /// by `deadline`, or if the change stream ended.
    pub(super) async fn visible(
        &self,
        id: &str,
        version: i64,
        deadline: Instant,
    ) -> Option<Instant> {
        let changed = {
            let mut tickets = self.seen.tickets.lock().ok()?;
            Arc::clone(&tickets.entry(id.to_owned()).or_default().changed)
        };
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change in between still wakes us.
            notified.as_mut().enable();
            let landed = self.seen.tickets.lock().ok().and_then(|tickets| {
                tickets
                    .get(id)?
                    .versions
                    .iter()
                    .find(|(v, _)| *v >= version)
                    .map(|(_, at)| *at)
            });
            if landed.is_some() || self.ended().is_some() {
                return landed;
            }
            tokio::time::timeout_at(deadline.into(), notified)
                .await
                .ok()?;
        }
    }
}
