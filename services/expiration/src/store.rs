//! The durable schedule: one record per order, fired exactly once by a write that also carries
//! `expiration:complete` for the outbox.

use std::sync::Arc;

use common::events::{ExpirationComplete, Outbox};
use futures::TryStreamExt as _;
use mongodb::bson::{DateTime, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::wake::Wake;

/// The collection of the schedule; its documents carry their pending events.
pub(crate) const EXPIRATIONS: &str = "expirations";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expiration {
    #[serde(rename = "_id")]
    order_id: String,
    expires_at: DateTime,
    #[serde(default)]
    fired_at: Option<DateTime>,
}

#[derive(Clone)]
pub(crate) struct Schedule {
    expirations: Collection<Expiration>,
    outbox: Outbox,
    /// Wakes the scheduler when something earlier than its next pass is scheduled.
    pub(crate) wake: Arc<Wake>,
}

impl Schedule {
    pub(crate) fn new(db: &Database, outbox: Outbox) -> Self {
        Self {
            expirations: db.collection(EXPIRATIONS),
            outbox,
            wake: Arc::default(),
        }
    }

    pub(crate) async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let due = IndexModel::builder()
            .keys(doc! { "firedAt": 1, "expiresAt": 1 })
            .options(IndexOptions::builder().name("due".to_owned()).build())
            .build();
        self.expirations.create_index(due).await?;
        Ok(())
    }

    /// Schedules the order's expiration; scheduling it again changes nothing.
    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub(crate) async fn schedule(
        &self,
        order_id: &str,
        at: DateTime,
    ) -> mongodb::error::Result<()> {
        self.expirations
            .update_one(
                doc! { "_id": order_id },
                doc! { "$setOnInsert": { "expiresAt": at, "firedAt": null } },
            )
            .upsert(true)
            .await?;
        tracing::info!(expires_at = %at, "expiration scheduled");
        self.wake.scheduled(at);
        Ok(())
    }

    /// Schedules several orders' expirations in one command; `false` when not all are known to
    /// be scheduled (the caller then schedules each with [`Schedule::schedule`]).
    pub(crate) async fn schedule_all(
        &self,
        orders: &[(&str, DateTime)],
    ) -> mongodb::error::Result<bool> {
        let updates = orders
            .iter()
            .map(|(order_id, at)| {
                doc! {
                    "q": { "_id": order_id },
                    "u": { "$setOnInsert": { "expiresAt": at, "firedAt": null } },
                    "upsert": true,
                }
            })
            .collect();
        let scheduled = common::mongo::update_all(&self.expirations, updates).await?;
        if let Some(earliest) = orders.iter().map(|(_, at)| *at).min() {
            // Even when not all were written: some may have been.
            self.wake.scheduled(earliest);
        }
        Ok(scheduled == Some(orders.len()))
    }

    /// The earliest pending expiration, if any.
    pub(crate) async fn next_due(&self) -> mongodb::error::Result<Option<DateTime>> {
        let next = self
            .expirations
            .find_one(doc! { "firedAt": null })
            .sort(doc! { "expiresAt": 1 })
            .await?;
        Ok(next.map(|e| e.expires_at))
    }

    /// Fires every expiration due by now; returns how many this call fired.
    pub(crate) async fn fire_due(&self) -> mongodb::error::Result<usize> {
        let due: Vec<Expiration> = self
            .expirations
            .find(doc! { "firedAt": null, "expiresAt": { "$lte": DateTime::now() } })
            .sort(doc! { "expiresAt": 1 })
            .limit(500)
            .await?
            .try_collect()
            .await?;
        let mut fired = 0;
        for expiration in due {
            if self.fire(&expiration.order_id).await? {
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// Marks one expiration fired with its event, in one write. Another replica that got
    /// there first makes this a no-op.
    async fn fire(&self, order_id: &str) -> mongodb::error::Result<bool> {
        let event = ExpirationComplete {
            order_id: order_id.to_owned(),
        };
        let guard = doc! { "firedAt": null };
        let set = doc! { "firedAt": DateTime::now() };
        let fired = self
            .outbox
            .update(&self.expirations, order_id, guard, set, &event)
            .await?;
        if fired {
            tracing::info!(%order_id, "expiration complete");
        }
        Ok(fired)
    }
}
