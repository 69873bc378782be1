//! Refund jobs: one per charge to give back (the charge id is the job's id, so asking twice
//! makes one job), retried by the worker until the gateway confirms. A job for an order's own
//! charge ends by moving the attempt to `refunded` with `payment:refunded`; a job for a second
//! charge of an order just ends.

use common::events::{OrderStatus, PaymentRefunded};
use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, doc, oid::ObjectId};
use serde::{Deserialize, Serialize};

use super::{AttemptState, OrderReplica, PaymentStore};

/// A charge to refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefundJob {
    #[serde(rename = "_id")]
    pub(crate) charge_id: String,
    pub(crate) order_id: ObjectId,
    /// The attempt whose charge it is; none for a second charge of an order.
    #[serde(default)]
    pub(crate) payment_id: Option<ObjectId>,
    pub(crate) reason: String,
    /// `pending` until the gateway confirmed, then `done`.
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) check_at: Option<DateTime>,
    #[serde(default)]
    pub(crate) checks: i32,
    #[serde(default)]
    pub(crate) refund_id: Option<String>,
    pub(crate) created_at: DateTime,
}

const PENDING: &str = "pending";
const DONE: &str = "done";

impl PaymentStore {
    /// If `order` is cancelled and its attempt succeeded, makes the refund job of its charge and
    /// moves the attempt to `refunding`. True when a refund was (or already is) under way.
    pub(crate) async fn compensate(&self, order: &OrderReplica) -> mongodb::error::Result<bool> {
        let Some(attempt) = &order.payment else {
            return Ok(false);
        };
        if order.status != OrderStatus::Cancelled {
            return Ok(false);
        }
        let charge_id = match (attempt.state, &attempt.charge_id) {
            (AttemptState::Succeeded, Some(charge_id)) => charge_id,
            (AttemptState::Refunding | AttemptState::Refunded, _) => return Ok(true),
            _ => return Ok(false),
        };
        // The job first: a crash before the state moves leaves a succeeded attempt of a
        // cancelled order, which the worker's sweep finds and brings here again.
        self.add_refund(
            order.id,
            charge_id,
            Some(attempt.id),
            "order cancelled before the charge was recorded",
        )
        .await?;
        self.orders
            .update_one(
                doc! { "_id": order.id, "payment.id": attempt.id, "payment.state": AttemptState::Succeeded.as_str() },
                doc! { "$set": { "payment.state": AttemptState::Refunding.as_str() } },
            )
            .await?;
        Ok(true)
    }

    /// Orders cancelled with a succeeded attempt: compensation not started (a crash between a
    /// cancellation or a charge and [`PaymentStore::compensate`]).
    pub(crate) async fn to_compensate(
        &self,
        limit: i64,
    ) -> mongodb::error::Result<Vec<OrderReplica>> {
        self.due(
            doc! { "payment.state": AttemptState::Succeeded.as_str(), "status": OrderStatus::Cancelled.as_str() },
            limit,
        )
        .await
    }

    /// Makes the refund job of `charge_id`, unless it exists.
    pub(crate) async fn add_refund(
        &self,
        order_id: ObjectId,
        charge_id: &str,
        payment_id: Option<ObjectId>,
        reason: &str,
    ) -> mongodb::error::Result<()> {
        let now = DateTime::now();
        let job = RefundJob {
            charge_id: charge_id.to_owned(),
            order_id,
            payment_id,
            reason: reason.to_owned(),
            state: PENDING.to_owned(),
            check_at: Some(now),
            checks: 0,
            refund_id: None,
            created_at: now,
        };
        let job = mongodb::bson::to_document(&job)
            .map_err(|e| mongodb::error::Error::custom(format!("store refund: {e}")))?;
        self.refunds
            .clone_with_type::<mongodb::bson::Document>()
            .update_one(doc! { "_id": charge_id }, doc! { "$setOnInsert": job })
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Refund jobs due for the worker.
    pub(crate) async fn due_refunds(&self, limit: i64) -> mongodb::error::Result<Vec<RefundJob>> {
        self.refunds
            .find(doc! { "state": PENDING, "checkAt": { "$lte": DateTime::now() } })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    /// Takes the job as read until `until`; false when another worker took it.
    pub(crate) async fn lease_refund(
        &self,
        job: &RefundJob,
        until: DateTime,
    ) -> mongodb::error::Result<bool> {
        let filter = doc! {
            "_id": &job.charge_id,
            "state": PENDING,
            "checkAt": job.check_at.map_or(Bson::Null, Bson::DateTime),
        };
        let update = doc! { "$set": { "checkAt": until }, "$inc": { "checks": 1 } };
        Ok(self.refunds.update_one(filter, update).await?.matched_count == 1)
    }

    /// The gateway refunded the job's charge: the attempt moves to `refunded` with
    /// `payment:refunded` (for the order's own charge), then the job is done.
    pub(crate) async fn refunded(
        &self,
        job: &RefundJob,
        refund_id: Option<String>,
    ) -> mongodb::error::Result<()> {
        if let Some(payment_id) = job.payment_id {
            let event = PaymentRefunded {
                id: payment_id.to_hex(),
                version: 1,
                order_id: job.order_id.to_hex(),
                stripe_id: job.charge_id.clone(),
                refund_id: refund_id.clone(),
            };
            let guard = doc! { "payment.id": payment_id, "payment.state": AttemptState::Refunding.as_str() };
            let set = doc! {
                "payment.state": AttemptState::Refunded.as_str(),
                "payment.refundId": refund_id.clone().map_or(Bson::Null, Bson::String),
            };
            // False on a repeat (a crash after this write, before the job's): already done.
            self.outbox
                .update(&self.orders, job.order_id, guard, set, &event)
                .await?;
        }
        self.refunds
            .update_one(
                doc! { "_id": &job.charge_id },
                doc! { "$set": {
                    "state": DONE,
                    "checkAt": Bson::Null,
                    "refundId": refund_id.map_or(Bson::Null, Bson::String),
                } },
            )
            .await?;
        tracing::info!(charge_id = %job.charge_id, order_id = %job.order_id, "charge refunded");
        Ok(())
    }

    /// How many refunds wait for the gateway (for `/metrics`).
    pub(crate) async fn pending_refunds(&self) -> mongodb::error::Result<u64> {
        self.refunds
            .count_documents(doc! { "state": PENDING })
            .await
    }
}
