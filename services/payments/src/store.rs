//! Payments and the replica of orders in MongoDB.
//!
//! A payment is claimed before the card is charged: one payment per order is a unique index,
//! so concurrent attempts for one order give exactly one charge.

use common::events::replica::{self, Applied};
use common::events::{OrderCancelled, OrderCreated, OrderStatus, Outbox, PaymentCreated};
use common::mongo::is_duplicate_key;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

/// The replica of an order, as the orders service last published it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderReplica {
    #[serde(rename = "_id")]
    pub(crate) id: ObjectId,
    pub(crate) user_id: String,
    pub(crate) price: f64,
    pub(crate) status: OrderStatus,
    pub(crate) expires_at: DateTime,
    pub(crate) version: i64,
}

/// The collection of payments; their documents carry their pending events.
pub(crate) const PAYMENTS: &str = "payments";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentDoc {
    #[serde(rename = "_id")]
    id: ObjectId,
    order_id: ObjectId,
    /// `pending` while the card is being charged, then `succeeded`.
    status: String,
    #[serde(default)]
    stripe_id: Option<String>,
    created_at: DateTime,
}

/// The outcome of trying to claim an order for payment.
pub(crate) enum Claim {
    /// This request may charge the card; the payment's id.
    Claimed(ObjectId),
    /// The order is paid already.
    AlreadyPaid,
    /// Another request is charging it right now.
    InProgress,
}

#[derive(Clone)]
pub(crate) struct PaymentStore {
    orders: Collection<OrderReplica>,
    orders_raw: Collection<Document>,
    payments: Collection<PaymentDoc>,
    outbox: Outbox,
}

impl PaymentStore {
    /// The store over `db`, its indexes made.
    pub(crate) async fn open(db: &Database, outbox: Outbox) -> mongodb::error::Result<Self> {
        let store = Self::new(db, outbox);
        store.ensure_indexes().await?;
        Ok(store)
    }

    fn new(db: &Database, outbox: Outbox) -> Self {
        Self {
            orders: db.collection("orders"),
            orders_raw: db.collection("orders"),
            payments: db.collection(PAYMENTS),
            outbox,
        }
    }

    pub(crate) async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let one_per_order = IndexModel::builder()
            .keys(doc! { "orderId": 1 })
            .options(
                IndexOptions::builder()
                    .name("one_payment_per_order".to_owned())
                    .unique(true)
                    .build(),
            )
            .build();
        self.payments.create_index(one_per_order).await?;
        Ok(())
    }

    /// `order:created`: the order enters the replica at version 0.
    pub(crate) async fn order_created(&self, order: &OrderCreated) -> anyhow::Result<Applied> {
        let id = ObjectId::parse_str(&order.id)?;
        let expires_at = DateTime::parse_rfc3339_str(&order.expires_at)?;
        let fields = doc! {
            "userId": &order.user_id,
            "price": order.ticket.price,
            "status": order.status.as_str(),
            "expiresAt": expires_at,
        };
        Ok(replica::apply(&self.orders_raw, id, order.version, fields, None).await?)
    }

    /// `order:cancelled`: the replica moves to the cancelled version.
    pub(crate) async fn order_cancelled(&self, order: &OrderCancelled) -> anyhow::Result<Applied> {
        let id = ObjectId::parse_str(&order.id)?;
        let fields = doc! { "status": OrderStatus::Cancelled.as_str() };
        Ok(replica::apply(&self.orders_raw, id, order.version, fields, None).await?)
    }

    pub(crate) async fn order(&self, id: ObjectId) -> mongodb::error::Result<Option<OrderReplica>> {
        self.orders.find_one(doc! { "_id": id }).await
    }

    /// Whether a payment for the order succeeded.
    pub(crate) async fn is_paid(&self, order_id: ObjectId) -> mongodb::error::Result<bool> {
        let paid = self
            .payments
            .find_one(doc! { "orderId": order_id, "status": "succeeded" })
            .await?;
        Ok(paid.is_some())
    }

    /// Reserves the right to charge for this order (the unique index settles races).
    pub(crate) async fn claim(&self, order_id: ObjectId) -> mongodb::error::Result<Claim> {
        let payment = PaymentDoc {
            id: ObjectId::new(),
            order_id,
            status: "pending".to_owned(),
            stripe_id: None,
            created_at: DateTime::now(),
        };
        match self.payments.insert_one(&payment).await {
            Ok(_) => Ok(Claim::Claimed(payment.id)),
            Err(e) if is_duplicate_key(&e) => {
                let existing = self.payments.find_one(doc! { "orderId": order_id }).await?;
                Ok(match existing.map(|p| p.status) {
                    Some(status) if status == "succeeded" => Claim::AlreadyPaid,
                    _ => Claim::InProgress,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the claim back after a declined card, so the buyer can try another one.
    pub(crate) async fn release(&self, payment_id: ObjectId) -> mongodb::error::Result<()> {
        self.payments
            .delete_one(doc! { "_id": payment_id, "status": "pending" })
            .await?;
        Ok(())
    }

    /// Records the charge and `payment:created` in one write.
    #[tracing::instrument(skip_all, fields(payment_id = %payment_id, order_id = %order_id))]
    pub(crate) async fn succeed(
        &self,
        payment_id: ObjectId,
        order_id: ObjectId,
        stripe_id: &str,
    ) -> mongodb::error::Result<()> {
        let event = PaymentCreated {
            id: payment_id.to_hex(),
            order_id: order_id.to_hex(),
            stripe_id: stripe_id.to_owned(),
        };
        let set = doc! { "status": "succeeded", "stripeId": stripe_id };
        if !self
            .outbox
            .update(&self.payments, payment_id, doc! {}, set, &event)
            .await?
        {
            // Only a declined card gives a claim back, so the claim of a charged card stays.
            return Err(mongodb::error::Error::custom(format!(
                "payment {payment_id} vanished while its card was charged"
            )));
        }
        tracing::info!(%stripe_id, "payment created");
        Ok(())
    }
}
