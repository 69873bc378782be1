//! Payment attempts: claimed before the card is charged, then settled by the charge's answer
//! or, when that answer was lost, by the worker's reconciliation. Every transition is one
//! write guarded by the attempt's id and state, so the request and the worker (of any replica)
//! can race and exactly one of them moves the attempt.

use std::time::Duration;

use common::events::{OrderStatus, PaymentCreated};
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde::{Deserialize, Serialize};

use super::{OrderReplica, PaymentStore};

/// Where an attempt stands (the table in `store/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AttemptState {
    Charging,
    Unknown,
    Declined,
    Failed,
    Succeeded,
    Refunding,
    Refunded,
}

impl AttemptState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Charging => "charging",
            Self::Unknown => "unknown",
            Self::Declined => "declined",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }

    /// The outcome is not known yet: another attempt must wait.
    pub(crate) fn in_flight(self) -> bool {
        matches!(self, Self::Charging | Self::Unknown)
    }

    /// Nothing was charged: the order may be paid again.
    pub(crate) fn ended_without_charge(self) -> bool {
        matches!(self, Self::Declined | Self::Failed)
    }
}

/// The states whose charge's outcome is not known yet.
fn in_flight() -> Bson {
    Bson::Array(vec![
        AttemptState::Charging.as_str().into(),
        AttemptState::Unknown.as_str().into(),
    ])
}

/// One attempt to pay an order, stored in the order's document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Attempt {
    /// The payment's id: the `id` of `POST /api/payments`' answer and of `payment:created`.
    pub(crate) id: ObjectId,
    pub(crate) state: AttemptState,
    /// 1 for an order's first attempt; part of the charge's idempotency key.
    pub(crate) number: i32,
    pub(crate) amount_cents: i64,
    pub(crate) started_at: DateTime,
    /// When the worker looks at it next; none while nothing is left to do.
    #[serde(default)]
    pub(crate) check_at: Option<DateTime>,
    /// How often the worker has looked (its backoff).
    #[serde(default)]
    pub(crate) checks: i32,
    #[serde(default)]
    pub(crate) charge_id: Option<String>,
    #[serde(default)]
    pub(crate) refund_id: Option<String>,
    /// Why it was declined or failed, for the logs and the buyer.
    #[serde(default)]
    pub(crate) reason: Option<String>,
    /// When to look for a second charge of the order (only after an uncertain attempt).
    #[serde(default)]
    pub(crate) audit_at: Option<DateTime>,
}

impl Attempt {
    /// The key of this attempt's charge: the same attempt never charges twice, and a new
    /// attempt (after a decline) is a new charge whatever token it carries.
    pub(crate) fn idempotency_key(&self, order_id: ObjectId) -> String {
        format!("order-{order_id}-attempt-{}", self.number)
    }

    /// A payment that succeeded before attempts were kept in orders.
    pub(super) fn adopted(id: ObjectId, charge_id: &str) -> Self {
        Self {
            id,
            state: AttemptState::Succeeded,
            number: 1,
            amount_cents: 0,
            started_at: id.timestamp(),
            check_at: None,
            checks: 0,
            charge_id: Some(charge_id.to_owned()),
            refund_id: None,
            reason: None,
            audit_at: None,
        }
    }

    pub(super) fn bson(&self) -> mongodb::error::Result<Bson> {
        mongodb::bson::to_bson(self)
            .map_err(|e| mongodb::error::Error::custom(format!("store attempt: {e}")))
    }
}

/// What recording a charge found.
#[derive(Debug)]
pub(crate) enum Charged {
    /// The order was still open: the attempt succeeded and `payment:created` is on its way.
    Paid,
    /// The order was cancelled meanwhile: the charge is recorded and must be refunded.
    Cancelled(OrderReplica),
    /// Someone else settled the attempt first (the worker, after a lost answer); the order as
    /// it is now.
    Settled(Option<OrderReplica>),
}

fn at(instant: std::time::SystemTime) -> DateTime {
    DateTime::from_system_time(instant)
}

impl PaymentStore {
    /// Records a new attempt for `order` in `charging`, if the order may be paid: open, not
    /// expired, and its latest attempt (the one read) ended without a charge. `None` when the
    /// order changed since it was read. The worker takes the attempt over after `lease` if
    /// nobody settled it (the process died mid-charge).
    pub(crate) async fn claim(
        &self,
        order: &OrderReplica,
        amount_cents: i64,
        lease: Duration,
    ) -> mongodb::error::Result<Option<Attempt>> {
        let now = std::time::SystemTime::now();
        let mut filter = doc! {
            "_id": order.id,
            "status": { "$in": [OrderStatus::Created.as_str(), OrderStatus::AwaitingPayment.as_str()] },
            "expiresAt": { "$gt": at(now) },
        };
        let number = match &order.payment {
            None => {
                filter.insert("payment", doc! { "$exists": false });
                1
            }
            Some(previous) if previous.state.ended_without_charge() => {
                filter.insert("payment.id", previous.id);
                filter.insert("payment.state", previous.state.as_str());
                previous.number + 1
            }
            Some(_) => return Ok(None),
        };
        let attempt = Attempt {
            id: ObjectId::new(),
            state: AttemptState::Charging,
            number,
            amount_cents,
            started_at: at(now),
            check_at: Some(at(now + lease)),
            checks: 0,
            charge_id: None,
            refund_id: None,
            reason: None,
            audit_at: None,
        };
        // Combined with concurrent writes of orders (`mongo::Updates`); no event yet.
        let claimed = self
            .outbox
            .apply(
                &self.orders,
                order.id,
                filter,
                doc! { "$set": { "payment": attempt.bson()? } },
                None,
            )
            .await?;
        Ok(claimed.then_some(attempt))
    }

    /// The guard of a transition out of `from`: this attempt, still in one of those states.
    fn attempt_in(attempt: ObjectId, from: Bson) -> Document {
        doc! { "payment.id": attempt, "payment.state": { "$in": from } }
    }

    /// Records the charge of an attempt whose outcome was not known: succeeded, with
    /// `payment:created` in the same write, unless the order was cancelled meanwhile.
    /// `audit_at`: when to look for a second charge (after an uncertain earlier attempt).
    pub(crate) async fn charged(
        &self,
        order_id: ObjectId,
        attempt: ObjectId,
        charge_id: &str,
        audit_at: Option<DateTime>,
    ) -> mongodb::error::Result<Charged> {
        let mut guard = Self::attempt_in(attempt, in_flight());
        guard.insert("status", doc! { "$ne": OrderStatus::Cancelled.as_str() });
        let mut set = doc! {
            "payment.state": AttemptState::Succeeded.as_str(),
            "payment.chargeId": charge_id,
            "payment.checkAt": Bson::Null,
        };
        if let Some(audit_at) = audit_at {
            set.insert("payment.auditAt", audit_at);
        }
        let event = PaymentCreated {
            id: attempt.to_hex(),
            order_id: order_id.to_hex(),
            stripe_id: charge_id.to_owned(),
        };
        if self
            .outbox
            .update(&self.orders, order_id, guard, set.clone(), &event)
            .await?
        {
            tracing::info!(%charge_id, "payment created");
            return Ok(Charged::Paid);
        }
        // Cancelled: the charge is recorded without an event; the refund follows.
        let mut guard = Self::attempt_in(attempt, in_flight());
        guard.insert("_id", order_id);
        guard.insert("status", OrderStatus::Cancelled.as_str());
        let cancelled = self
            .orders
            .find_one_and_update(guard, doc! { "$set": set })
            .return_document(mongodb::options::ReturnDocument::After)
            .await?;
        Ok(match cancelled {
            Some(order) => {
                tracing::warn!(%charge_id, "charged after the order was cancelled: refunding");
                Charged::Cancelled(order)
            }
            None => Charged::Settled(self.order(order_id).await?),
        })
    }

    /// Settles an attempt in `charging` or `unknown` without a charge (`declined`, `failed`)
    /// or as `unknown` (to be reconciled at `check_at`). False when it had moved already.
    pub(crate) async fn settle(
        &self,
        order_id: ObjectId,
        attempt: ObjectId,
        state: AttemptState,
        reason: &str,
        check_at: Option<DateTime>,
    ) -> mongodb::error::Result<bool> {
        let mut filter = Self::attempt_in(attempt, in_flight());
        filter.insert("_id", order_id);
        let mut set = doc! {
            "payment.state": state.as_str(),
            "payment.reason": reason,
            "payment.checkAt": check_at.map_or(Bson::Null, Bson::DateTime),
        };
        if state == AttemptState::Failed {
            // A charge the search did not show yet would surface after a later success.
            set.insert("uncertain", true);
        }
        let written = self.orders.update_one(filter, doc! { "$set": set }).await?;
        Ok(written.matched_count == 1)
    }

    /// Attempts whose outcome is unknown and due for the worker: `unknown` ones, and
    /// `charging` ones whose request died.
    pub(crate) async fn due_attempts(
        &self,
        limit: i64,
    ) -> mongodb::error::Result<Vec<OrderReplica>> {
        self.due(
            doc! { "payment.state": { "$in": in_flight() }, "payment.checkAt": { "$lte": DateTime::now() } },
            limit,
        )
        .await
    }

    /// Succeeded attempts whose order had an uncertain attempt, due for a look for a second
    /// charge.
    pub(crate) async fn due_audits(&self, limit: i64) -> mongodb::error::Result<Vec<OrderReplica>> {
        self.due(
            doc! { "payment.auditAt": { "$lte": DateTime::now() } },
            limit,
        )
        .await
    }

    pub(super) async fn due(
        &self,
        filter: Document,
        limit: i64,
    ) -> mongodb::error::Result<Vec<OrderReplica>> {
        use futures::TryStreamExt as _;
        self.orders
            .find(filter)
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    /// Takes the attempt as read for the worker until `until`, so that another replica's
    /// worker leaves it alone meanwhile; false when it moved since it was read.
    pub(crate) async fn lease(
        &self,
        order_id: ObjectId,
        attempt: &Attempt,
        until: DateTime,
    ) -> mongodb::error::Result<bool> {
        let filter = doc! {
            "_id": order_id,
            "payment.id": attempt.id,
            "payment.state": attempt.state.as_str(),
            "payment.checkAt": attempt.check_at.map_or(Bson::Null, Bson::DateTime),
        };
        let update = doc! { "$set": { "payment.checkAt": until }, "$inc": { "payment.checks": 1 } };
        Ok(self.orders.update_one(filter, update).await?.matched_count == 1)
    }

    /// The look for a second charge is done (`next: None`), or is to be repeated at `next`.
    pub(crate) async fn audited(
        &self,
        order_id: ObjectId,
        attempt: ObjectId,
        next: Option<DateTime>,
    ) -> mongodb::error::Result<()> {
        let update = match next {
            None => doc! { "$unset": { "payment.auditAt": "" } },
            Some(next) => doc! { "$set": { "payment.auditAt": next } },
        };
        self.orders
            .update_one(doc! { "_id": order_id, "payment.id": attempt }, update)
            .await?;
        Ok(())
    }

    /// How many attempts wait for reconciliation (for `/metrics`).
    pub(crate) async fn unresolved(&self) -> mongodb::error::Result<u64> {
        self.orders
            .count_documents(doc! { "$or": [
                { "payment.state": AttemptState::Unknown.as_str() },
                { "payment.state": AttemptState::Charging.as_str(), "payment.checkAt": { "$lte": DateTime::now() } },
            ] })
            .await
    }
}
