//! What payments' events do to an order: `payment:created` completes it (status `complete`,
//! version + 1; a complete order is final), and `payment:refunded` records that the charge of
//! a payment that came after the order's cancellation went back to the buyer. Both are
//! idempotent and commute: whichever arrives first, the order ends in the same state.

use common::events::{OrderStatus, PaymentCreated, PaymentRefunded};
use mongodb::bson::{Bson, doc, oid::ObjectId};
use serde::{Deserialize, Serialize};

use super::{OrderDoc, OrderStore, StoreError};

/// Where an order's payment stands, as the order shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PaymentStatus {
    /// The payment completed the order.
    Paid,
    /// The charge landed after the order was cancelled; payments is refunding it.
    Refunding,
    /// That charge went back to the buyer.
    Refunded,
}

impl PaymentStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }
}

/// An order's payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderPayment {
    /// The payment's id.
    pub(crate) id: String,
    /// The gateway's charge id.
    pub(crate) stripe_id: String,
    pub(crate) status: PaymentStatus,
}

impl OrderPayment {
    fn bson(id: &str, stripe_id: &str, status: PaymentStatus) -> Bson {
        Bson::Document(doc! { "id": id, "stripeId": stripe_id, "status": status.as_str() })
    }
}

impl OrderStore {
    /// Marks the order paid. Idempotent. A cancelled order stays cancelled, showing the
    /// payment as `refunding`: payments refunds a charge that lands on a cancelled order.
    #[tracing::instrument(skip_all, fields(order_id = %event.order_id))]
    pub(crate) async fn complete(&self, event: &PaymentCreated) -> Result<(), StoreError> {
        let id = ObjectId::parse_str(&event.order_id).map_err(|_| StoreError::NotFound)?;
        // An order this process created and has not changed since is written without a
        // read; a change since is a guard miss, and it is read.
        let mut remembered = self.recent.take(&id);
        loop {
            let fresh = remembered.is_none();
            let order = match remembered.take() {
                Some(order) => order,
                None => self
                    .orders
                    .find_one(doc! { "_id": id })
                    .await?
                    .ok_or(StoreError::NotFound)?,
            };
            if self.complete_order(event, order).await? {
                return Ok(());
            }
            if fresh {
                // Changed concurrently (e.g. cancelled); the redelivery re-reads it.
                return Err(StoreError::Mongo(mongodb::error::Error::custom(
                    "order changed concurrently",
                )));
            }
        }
    }

    /// [`OrderStore::complete`] on `order` as read or remembered; false when the guarded
    /// write missed (the order changed since).
    async fn complete_order(
        &self,
        event: &PaymentCreated,
        order: OrderDoc,
    ) -> Result<bool, StoreError> {
        let id = order.id;
        let paid = OrderPayment::bson(&event.id, &event.stripe_id, PaymentStatus::Paid);
        match order.status {
            OrderStatus::Complete => return Ok(true),
            OrderStatus::Cancelled => {
                tracing::warn!("payment for a cancelled order: payments refunds it");
                let refunding =
                    OrderPayment::bson(&event.id, &event.stripe_id, PaymentStatus::Refunding);
                // Not over a `refunded` that arrived first.
                self.orders
                    .update_one(
                        doc! { "_id": id, "payment": { "$exists": false } },
                        doc! { "$set": { "payment": refunding } },
                    )
                    .await?;
                return Ok(true);
            }
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        // Combined with concurrent writes of orders (`mongo::Updates`); no event to hand over.
        let written = self
            .outbox
            .apply(
                &self.orders,
                id,
                doc! { "version": order.version, "status": { "$ne": "cancelled" } },
                doc! { "$set": {
                    "status": "complete",
                    "openSlot": null,
                    "version": order.version + 1,
                    "payment": paid,
                } },
                None,
            )
            .await?;
        if written {
            tracing::info!(version = order.version + 1, "order complete");
        }
        Ok(written)
    }

    /// Records that the payment's charge was refunded (the order was cancelled before it
    /// landed). Not a change of the order's own state: its version stays.
    #[tracing::instrument(skip_all, fields(order_id = %event.order_id))]
    pub(crate) async fn refunded(&self, event: &PaymentRefunded) -> Result<(), StoreError> {
        let id = ObjectId::parse_str(&event.order_id).map_err(|_| StoreError::NotFound)?;
        let refunded = OrderPayment::bson(&event.id, &event.stripe_id, PaymentStatus::Refunded);
        let written = self
            .orders
            .update_one(doc! { "_id": id }, doc! { "$set": { "payment": refunded } })
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::NotFound);
        }
        tracing::info!(stripe_id = %event.stripe_id, "payment refunded");
        Ok(())
    }
}
