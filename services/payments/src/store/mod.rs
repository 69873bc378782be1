//! The payments database: the replica of orders, each order carrying the state of its latest
//! payment attempt (so that a cancellation and a charge's outcome meet in one document, and
//! one atomic write decides between them), and the refund jobs.
//!
//! Attempt states (`Attempt::state`), and who moves them:
//!
//! | state | meaning | next |
//! |---|---|---|
//! | `charging` | recorded before the card is charged | `succeeded`, `declined`, `unknown` |
//! | `unknown` | the gateway's answer was lost (timeout, 5xx, crash) | `succeeded`, `failed` (reconciled) |
//! | `declined` / `failed` | nothing was charged; the order may be paid again | a new `charging` |
//! | `succeeded` | charged; `payment:created` is pending or sent | `refunding` if the order is cancelled |
//! | `refunding` | a refund job exists for the charge | `refunded` (`payment:refunded`) |

mod attempts;
mod refunds;

pub(crate) use attempts::{Attempt, AttemptState, Charged};
pub(crate) use refunds::RefundJob;

use common::events::replica::{self, Applied};
use common::events::{Arrival, Arrivals};
use common::events::{OrderCancelled, OrderCreated, OrderStatus, Outbox};
use common::mongo::{Reads, Updates};
use futures::TryStreamExt as _;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

/// The replica of an order, as the orders service last published it, with its payment.
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
    /// The latest payment attempt, if any.
    #[serde(default)]
    pub(crate) payment: Option<Attempt>,
    /// Some attempt of this order was declared failed because the gateway showed no charge:
    /// a later success is followed by a look for a second charge to refund.
    #[serde(default)]
    pub(crate) uncertain: bool,
}

/// The replica of orders; its documents carry their pending events.
pub(crate) const ORDERS: &str = "orders";
/// Where payments lived before they moved into the orders' documents: read once at start-up,
/// and still scanned by the outbox for events left in it.
pub(crate) const LEGACY_PAYMENTS: &str = "payments";
/// Refund jobs, one per charge to give back.
const REFUNDS: &str = "refunds";

#[derive(Clone)]
pub(crate) struct PaymentStore {
    orders: Collection<OrderReplica>,
    orders_raw: Collection<Document>,
    /// The replica's guarded writes from events, combined under load with the others.
    replica_updates: Updates,
    /// Reads by id of the replica, combined across requests.
    order_reads: Reads<OrderReplica>,
    /// Wakes the payments waiting for an order this process's listener just applied.
    arrivals: Arrivals,
    refunds: Collection<RefundJob>,
    legacy: Collection<Document>,
    outbox: Outbox,
}

impl PaymentStore {
    /// The store over `db`, its indexes made and legacy payments adopted.
    pub(crate) async fn open(db: &Database, outbox: Outbox) -> mongodb::error::Result<Self> {
        let orders_raw: Collection<Document> = db.collection(ORDERS);
        let store = Self {
            orders: db.collection(ORDERS),
            // The outbox's, shared with the attempts' writes.
            replica_updates: outbox
                .updates(&orders_raw)
                .unwrap_or_else(|| Updates::new(&orders_raw)),
            order_reads: Reads::new(&orders_raw),
            arrivals: Arrivals::default(),
            orders_raw,
            refunds: db.collection(REFUNDS),
            legacy: db.collection(LEGACY_PAYMENTS),
            outbox,
        };
        store.ensure_indexes().await?;
        store.adopt_legacy().await?;
        Ok(store)
    }

    async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        // The worker's scans: attempts by state and due time, orders to compensate.
        let by_state = IndexModel::builder()
            .keys(doc! { "payment.state": 1, "payment.checkAt": 1 })
            .options(
                IndexOptions::builder()
                    .name("payment_state".to_owned())
                    .partial_filter_expression(doc! { "payment.state": { "$exists": true } })
                    .build(),
            )
            .build();
        let audits = IndexModel::builder()
            .keys(doc! { "payment.auditAt": 1 })
            .options(
                IndexOptions::builder()
                    .name("payment_audit".to_owned())
                    .partial_filter_expression(doc! { "payment.auditAt": { "$exists": true } })
                    .build(),
            )
            .build();
        self.orders.create_indexes([by_state, audits]).await?;
        let due = IndexModel::builder()
            .keys(doc! { "state": 1, "checkAt": 1 })
            .options(IndexOptions::builder().name("due".to_owned()).build())
            .build();
        self.refunds.create_index(due).await?;
        Ok(())
    }

    /// Payments recorded before attempts moved into the orders' documents: each succeeded one
    /// becomes its order's attempt, so that an order paid then is never charged again.
    async fn adopt_legacy(&self) -> mongodb::error::Result<()> {
        let mut paid = self.legacy.find(doc! { "status": "succeeded" }).await?;
        while let Some(payment) = paid.try_next().await? {
            let (Ok(id), Ok(order_id), Ok(charge)) = (
                payment.get_object_id("_id"),
                payment.get_object_id("orderId"),
                payment.get_str("stripeId"),
            ) else {
                continue;
            };
            let attempt = Attempt::adopted(id, charge);
            self.orders
                .update_one(
                    doc! { "_id": order_id, "payment": { "$exists": false } },
                    doc! { "$set": { "payment": attempt.bson()? } },
                )
                .await?;
        }
        Ok(())
    }

    /// `order:created`: the order enters the replica at version 0.
    pub(crate) async fn order_created(&self, order: &OrderCreated) -> anyhow::Result<Applied> {
        let (id, fields) = created_fields(order)?;
        let applied = replica::apply(&self.orders_raw, id, order.version, fields, None).await?;
        self.arrivals.applied();
        Ok(applied)
    }

    /// Several `order:created` in one command; `false` when not all applied (the caller
    /// then applies each with [`PaymentStore::order_created`], which finds the others done).
    pub(crate) async fn orders_created(&self, orders: &[&OrderCreated]) -> anyhow::Result<bool> {
        let changes = orders
            .iter()
            .map(|order| {
                let (id, fields) = created_fields(order)?;
                Ok((id.into(), order.version, fields))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let all = replica::apply_all(&self.orders_raw, changes).await?;
        self.arrivals.applied();
        Ok(all)
    }

    /// `order:cancelled`: the replica moves to the cancelled version; the order, read back,
    /// says whether a charge now needs refunding (`None`: nothing to look at).
    pub(crate) async fn order_cancelled(
        &self,
        order: &OrderCancelled,
    ) -> anyhow::Result<(Applied, Option<OrderReplica>)> {
        let id = ObjectId::parse_str(&order.id)?;
        let fields = doc! { "status": OrderStatus::Cancelled.as_str() };
        // Most cancelled orders were never paid for. Cancelled while it had no attempt, an
        // order cannot get one after (a claim needs an open order): nothing to refund, and
        // nothing to read back. Otherwise (an attempt, or not the next version) as below.
        if order.version > 0 {
            let mut cancelled = fields.clone();
            cancelled.insert("version", order.version);
            let unpaid = doc! { "version": order.version - 1, "payment": { "$exists": false } };
            if self
                .replica_updates
                .update(id, unpaid, doc! { "$set": cancelled })
                .await?
            {
                return Ok((Applied::Applied, None));
            }
        }
        let (applied, record) = replica::apply_returning(
            &self.orders_raw,
            &self.replica_updates,
            id,
            order.version,
            fields,
        )
        .await?;
        let current = match applied {
            Applied::Future { .. } => None,
            // The order as read right after the cancellation: a charge racing it meets the
            // cancellation too (attempts are guarded against a cancelled order).
            Applied::Applied => record
                .map(mongodb::bson::from_document::<OrderReplica>)
                .transpose()?,
            Applied::Stale => self.order(id).await?,
        };
        Ok((applied, current))
    }

    pub(crate) async fn order(&self, id: ObjectId) -> mongodb::error::Result<Option<OrderReplica>> {
        self.order_reads.find(id).await
    }

    /// The order, waited for while its `order:created` may still be on its way (an order made
    /// moments ago: [`Arrivals`]); `waiting` hears when the wait starts.
    pub(crate) async fn arriving_order(
        &self,
        id: ObjectId,
        waiting: impl FnOnce(),
    ) -> mongodb::error::Result<Arrival<OrderReplica>> {
        self.arrivals
            .read(id, || self.order_reads.find(id), waiting)
            .await
    }
}

/// The replica's id and fields of a created order.
fn created_fields(order: &OrderCreated) -> anyhow::Result<(ObjectId, Document)> {
    let id = ObjectId::parse_str(&order.id)?;
    let expires_at = DateTime::parse_rfc3339_str(&order.expires_at)?;
    let fields = doc! {
        "userId": &order.user_id,
        "price": order.ticket.price,
        "status": order.status.as_str(),
        "expiresAt": expires_at,
    };
    Ok((id, fields))
}
