//! Orders and the replica of tickets in MongoDB; what payments' events do to an order is in
//! `payments.rs`.
//!
//! One active order per ticket is the database's rule: a partial unique index on the ticket
//! of orders that still hold it, so buyers racing for one ticket get exactly one order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::events::replica::{self, Applied};
use common::events::{
    OrderCancelled, OrderCreated, OrderCreatedTicket, OrderStatus, Outbox, TicketData, TicketRef,
};
use common::mongo::{Reads, duplicate_key_index};
use common::recent::Recent;
use futures::TryStreamExt as _;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

mod payments;

pub(crate) use payments::OrderPayment;

/// The collection of orders; their documents carry their pending events.
pub(crate) const ORDERS: &str = "orders";

/// A stored order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderDoc {
    #[serde(rename = "_id")]
    pub(crate) id: ObjectId,
    pub(crate) user_id: String,
    pub(crate) status: OrderStatus,
    pub(crate) expires_at: DateTime,
    pub(crate) version: i64,
    pub(crate) ticket_id: ObjectId,
    /// True while the order holds its ticket; the unique index only covers active orders.
    pub(crate) active: bool,
    /// Which of its user's open-order slots the order takes while it is open (created or
    /// awaiting payment); `None` once it is cancelled or complete. A unique index over (user,
    /// slot) bounds a user's open orders in the database, whatever races.
    #[serde(default)]
    pub(crate) open_slot: Option<i32>,
    /// The payment that completed it, or the one that came after its cancellation and is
    /// refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payment: Option<OrderPayment>,
}

/// The replica of a ticket, as the tickets service last published it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TicketReplica {
    #[serde(rename = "_id")]
    pub(crate) id: ObjectId,
    pub(crate) title: String,
    pub(crate) price: f64,
    pub(crate) version: i64,
}

/// An order with its ticket, as the API shows it.
pub(crate) struct OrderView {
    pub(crate) order: OrderDoc,
    pub(crate) ticket: Option<TicketReplica>,
}

/// Why an order change was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("not the order's owner")]
    NotOwner,
    #[error("ticket already reserved")]
    Reserved,
    #[error("order already paid")]
    Paid,
    #[error("too many open orders")]
    TooManyOpen,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
}

impl From<StoreError> for common::ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::NotOwner => Self::NotAuthorized,
            StoreError::Reserved => Self::bad_request("Ticket is already reserved"),
            StoreError::Paid => Self::bad_request("Cannot cancel a paid order"),
            StoreError::TooManyOpen => Self::bad_request("Too many open orders"),
            StoreError::Mongo(e) => e.into(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct OrderStore {
    orders: Collection<OrderDoc>,
    tickets: Collection<TicketReplica>,
    /// The same collection untyped, for versioned applies.
    tickets_raw: Collection<Document>,
    /// Reads by id of orders and of the ticket replica, combined across requests.
    order_reads: Reads<OrderDoc>,
    ticket_reads: Reads<TicketReplica>,
    outbox: Outbox,
    expiration: Duration,
    /// Open orders one user may hold.
    max_open: usize,
    /// Orders this process created and has not changed since, so that their cancellation or
    /// completion is written without a read (guarded by the version, as every change is).
    recent: Arc<Recent<ObjectId, OrderDoc>>,
}

/// Orders remembered; past this the memory starts over (a miss costs one read).
const RECENT: usize = 16_384;

/// The unique index that bounds a user's open orders.
const OPEN_SLOTS: &str = "one_open_order_per_slot";

impl OrderStore {
    /// The store over `db`, its indexes made.
    pub(crate) async fn open(
        db: &Database,
        outbox: Outbox,
        expiration: Duration,
        max_open: usize,
    ) -> mongodb::error::Result<Self> {
        let store = Self::new(db, outbox, expiration, max_open);
        store.ensure_indexes().await?;
        Ok(store)
    }

    fn new(db: &Database, outbox: Outbox, expiration: Duration, max_open: usize) -> Self {
        Self {
            orders: db.collection(ORDERS),
            tickets: db.collection("tickets"),
            tickets_raw: db.collection("tickets"),
            order_reads: Reads::new(&db.collection::<OrderDoc>(ORDERS)),
            ticket_reads: Reads::new(&db.collection::<TicketReplica>("tickets")),
            outbox,
            expiration,
            max_open,
            recent: Arc::new(Recent::new(RECENT)),
        }
    }

    pub(crate) async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let one_active_order_per_ticket = IndexModel::builder()
            .keys(doc! { "ticketId": 1 })
            .options(
                IndexOptions::builder()
                    .name("one_active_order_per_ticket".to_owned())
                    .unique(true)
                    .partial_filter_expression(doc! { "active": true })
                    .build(),
            )
            .build();
        let by_user = IndexModel::builder()
            .keys(doc! { "userId": 1, "_id": -1 })
            .options(IndexOptions::builder().name("by_user".to_owned()).build())
            .build();
        let open_slots = IndexModel::builder()
            .keys(doc! { "userId": 1, "openSlot": 1 })
            .options(
                IndexOptions::builder()
                    .name(OPEN_SLOTS.to_owned())
                    .unique(true)
                    .partial_filter_expression(doc! { "openSlot": { "$gte": 0 } })
                    .build(),
            )
            .build();
        self.orders
            .create_indexes([one_active_order_per_ticket, by_user, open_slots])
            .await?;
        Ok(())
    }

    /// Applies a ticket event to the replica (version guard in the write's filter).
    #[tracing::instrument(skip_all, fields(ticket_id = %ticket.id, version = ticket.version))]
    pub(crate) async fn apply_ticket(&self, ticket: &TicketData) -> anyhow::Result<Applied> {
        let id = ObjectId::parse_str(&ticket.id)?;
        let fields = doc! { "title": &ticket.title, "price": ticket.price };
        let applied = replica::apply(&self.tickets_raw, id, ticket.version, fields, None).await?;
        tracing::info!(?applied, "ticket replica");
        Ok(applied)
    }

    /// Applies a run of ticket versions in one round trip; false unless all of them applied.
    pub(crate) async fn apply_tickets(&self, tickets: &[&TicketData]) -> anyhow::Result<bool> {
        let mut changes = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            let id = ObjectId::parse_str(&ticket.id)?;
            let fields = doc! { "title": &ticket.title, "price": ticket.price };
            changes.push((id.into(), ticket.version, fields));
        }
        let applied = replica::apply_all(&self.tickets_raw, changes).await?;
        tracing::info!(count = tickets.len(), applied, "ticket replica batch");
        Ok(applied)
    }

    /// The ticket as orders knows it, read with the other requests' reads (orders are polled).
    pub(crate) async fn ticket(&self, id: ObjectId) -> Result<Option<TicketReplica>, StoreError> {
        Ok(self.ticket_reads.find(id).await?)
    }

    /// Places an order for the ticket, holding it for the expiration window.
    #[tracing::instrument(skip_all, fields(ticket_id = %ticket_id))]
    pub(crate) async fn create(
        &self,
        user_id: String,
        ticket_id: ObjectId,
    ) -> Result<OrderView, StoreError> {
        // Read on its own: on the way to the order's writes, a wait for a combined read's
        // turn showed in creation's latency and saved nothing (few creations read at once).
        let ticket = self
            .tickets
            .find_one(doc! { "_id": ticket_id })
            .await?
            .ok_or(StoreError::NotFound)?;
        let expires_at = DateTime::from_system_time(std::time::SystemTime::now() + self.expiration);
        let mut order = OrderDoc {
            id: ObjectId::new(),
            user_id,
            status: OrderStatus::Created,
            expires_at,
            version: 0,
            ticket_id,
            active: true,
            open_slot: None,
            payment: None,
        };
        let event = OrderCreated {
            id: order.id.to_hex(),
            version: 0,
            status: OrderStatus::Created,
            user_id: order.user_id.clone(),
            expires_at: iso(expires_at),
            ticket: OrderCreatedTicket {
                id: ticket_id.to_hex(),
                price: ticket.price,
            },
        };
        // A slot another order of the user took meanwhile is a duplicate key: look again. Each
        // round sees at least one more slot taken, so this ends within `max_open` rounds. Most
        // buyers hold no open order, so the first slot is tried before reading which are taken.
        let mut lost = 0;
        let mut guess = (self.max_open > 0).then_some(0);
        loop {
            let guessed = guess.take();
            order.open_slot = Some(match guessed {
                Some(slot) => slot,
                None => self.free_slot(&order.user_id).await?,
            });
            let Err(error) = self.outbox.insert(&self.orders, &order, &event).await else {
                break;
            };
            match duplicate_key_index(&error).as_deref() {
                // The guess was taken: now read which are.
                Some(OPEN_SLOTS) if guessed.is_some() => {}
                Some(OPEN_SLOTS) if lost < self.max_open => lost += 1,
                Some(OPEN_SLOTS) => return Err(StoreError::TooManyOpen),
                Some(_) => return Err(StoreError::Reserved),
                None => return Err(error.into()),
            }
        }
        self.recent.put(order.id, order.clone());
        tracing::info!(order_id = %order.id, "order created");
        Ok(OrderView {
            order,
            ticket: Some(ticket),
        })
    }

    /// The lowest slot of `user_id`'s open orders not taken; refused when all are.
    async fn free_slot(&self, user_id: &str) -> Result<i32, StoreError> {
        let taken: Vec<Document> = self
            .orders
            .clone_with_type::<Document>()
            .find(doc! { "userId": user_id, "openSlot": { "$gte": 0 } })
            .projection(doc! { "openSlot": 1 })
            .await?
            .try_collect()
            .await?;
        let taken: std::collections::HashSet<i32> = taken
            .iter()
            .filter_map(|order| order.get_i32("openSlot").ok())
            .collect();
        (0..i32::try_from(self.max_open).unwrap_or(i32::MAX))
            .find(|slot| !taken.contains(slot))
            .ok_or(StoreError::TooManyOpen)
    }

    pub(crate) async fn list(&self, user_id: &str) -> Result<Vec<OrderView>, StoreError> {
        let orders: Vec<OrderDoc> = self
            .orders
            .find(doc! { "userId": user_id })
            .sort(doc! { "_id": -1 })
            .await?
            .try_collect()
            .await?;
        let ids: Vec<ObjectId> = orders.iter().map(|o| o.ticket_id).collect();
        let mut tickets: HashMap<ObjectId, TicketReplica> = self
            .tickets
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        Ok(orders
            .into_iter()
            .map(|order| OrderView {
                ticket: tickets.remove(&order.ticket_id),
                order,
            })
            .collect())
    }

    /// The caller's order: 404 when it does not exist, 401 when it is someone else's.
    pub(crate) async fn show(&self, id: ObjectId, user_id: &str) -> Result<OrderView, StoreError> {
        let order = self
            .order_reads
            .find(id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if order.user_id != user_id {
            return Err(StoreError::NotOwner);
        }
        let ticket = self.ticket(order.ticket_id).await?;
        Ok(OrderView { order, ticket })
    }

    /// Cancels the order (its owner's request when `user_id` is given). Cancelling a cancelled
    /// order changes nothing; a paid order cannot be cancelled.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub(crate) async fn cancel(
        &self,
        id: ObjectId,
        user_id: Option<&str>,
    ) -> Result<OrderDoc, StoreError> {
        // The owner never changes, and an order remembered is open as created: a change
        // since (paid, cancelled elsewhere) makes the guarded write a miss, then a read.
        let mut remembered = self.recent.take(&id);
        let outcome = loop {
            let order = match remembered.take() {
                Some(order) => order,
                None => match self.order_reads.find(id).await? {
                    Some(order) => order,
                    None => return Err(StoreError::NotFound),
                },
            };
            if user_id.is_some_and(|user| user != order.user_id) {
                return Err(StoreError::NotOwner);
            }
            match order.status {
                OrderStatus::Cancelled => break (order, false),
                OrderStatus::Complete => return Err(StoreError::Paid),
                OrderStatus::Created | OrderStatus::AwaitingPayment => {}
            }
            let cancelled = OrderDoc {
                status: OrderStatus::Cancelled,
                version: order.version + 1,
                active: false,
                open_slot: None,
                ..order.clone()
            };
            let event = OrderCancelled {
                id: id.to_hex(),
                version: cancelled.version,
                ticket: TicketRef {
                    id: order.ticket_id.to_hex(),
                },
            };
            let set = doc! {
                "status": "cancelled",
                "active": false,
                "openSlot": null,
                "version": cancelled.version,
            };
            // Changed since the read (paid, or cancelled by the expiration): read again.
            let guard = doc! { "version": order.version };
            if self
                .outbox
                .update(&self.orders, id, guard, set, &event)
                .await?
            {
                break (cancelled, true);
            }
        };
        let (order, changed) = outcome;
        if changed {
            tracing::info!(version = order.version, "order cancelled");
        }
        Ok(order)
    }
}

/// RFC 3339 with milliseconds, as the original's `toISOString()`.
pub(crate) fn iso(at: DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_default()
}
