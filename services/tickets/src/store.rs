//! Tickets in MongoDB. Every change writes its event into the ticket's document (the outbox
//! publishes it), and every write is guarded by the version it read, so concurrent changes
//! never silently overwrite each other: the loser reads again (or, in a transaction, MongoDB
//! aborts it with a write conflict and the driver retries it).

use common::events::replica::{self, Applied};
use common::events::{
    OrderCancelled, OrderCreated, Outbox, PendingEvent, TicketCreated, TicketData, TicketUpdated,
};
use common::mongo::{KeyLocks, Transaction};
use futures::TryStreamExt as _;
use mongodb::bson::{Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::list_cache::ListCache;

/// The collection of tickets; their documents carry their pending events.
pub(crate) const TICKETS: &str = "tickets";

/// A stored ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TicketDoc {
    #[serde(rename = "_id")]
    pub(crate) id: ObjectId,
    pub(crate) title: String,
    pub(crate) price: f64,
    pub(crate) user_id: String,
    pub(crate) version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) order_id: Option<String>,
}

impl TicketDoc {
    fn event_data(&self) -> TicketData {
        TicketData {
            id: self.id.to_hex(),
            version: self.version,
            title: self.title.clone(),
            price: self.price,
            user_id: self.user_id.clone(),
            order_id: self.order_id.clone(),
        }
    }
}

/// One version of an order, as the tickets service keeps it.
struct OrderSeen<'a> {
    id: &'a str,
    version: i64,
    ticket_id: &'a str,
    status: &'a str,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("ticket not found")]
    NotFound,
    #[error("not the ticket's owner")]
    NotOwner,
    #[error("ticket is reserved")]
    Reserved,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
}

impl From<StoreError> for common::ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::NotOwner => Self::NotAuthorized,
            StoreError::Reserved => Self::bad_request("Cannot edit a reserved ticket"),
            StoreError::Mongo(e) => e.into(),
        }
    }
}

/// Unreserved tickets, newest first, and whether more follow.
pub(crate) struct Listing {
    pub(crate) tickets: Vec<TicketDoc>,
    pub(crate) has_more: bool,
}

#[derive(Clone)]
pub(crate) struct TicketStore {
    client: Client,
    tickets: Collection<TicketDoc>,
    /// The order versions this service has applied: a minimal replica of orders, so that a
    /// cancellation is applied only after the creation it undoes.
    orders_seen: Collection<Document>,
    /// One document per ticket that every order apply writes (`turns`), so that two processes
    /// applying orders of one ticket at once conflict and one retries, instead of each
    /// computing the holder from a snapshot without the other's order (write skew).
    turns: Collection<Document>,
    outbox: Outbox,
    /// Changes to one ticket from this process take turns instead of conflicting.
    locks: std::sync::Arc<KeyLocks>,
    /// The public list as served; every commit here makes it out of date.
    list_cache: std::sync::Arc<ListCache>,
}

impl TicketStore {
    /// The store over `db`, its indexes made.
    pub(crate) async fn open(db: &Database, outbox: Outbox) -> mongodb::error::Result<Self> {
        let store = Self::new(db, outbox);
        store.ensure_indexes().await?;
        Ok(store)
    }

    pub(crate) fn new(db: &Database, outbox: Outbox) -> Self {
        Self {
            client: db.client().clone(),
            tickets: db.collection(TICKETS),
            orders_seen: db.collection("orders_seen"),
            turns: db.collection("order_turns"),
            outbox,
            locks: std::sync::Arc::new(KeyLocks::new(1024)),
            list_cache: std::sync::Arc::default(),
        }
    }

    /// The public list as served, which this store's commits invalidate.
    pub(crate) fn list_cache(&self) -> &std::sync::Arc<ListCache> {
        &self.list_cache
    }

    /// The tickets collection, for following its changes.
    pub(crate) fn collection(&self) -> Collection<Document> {
        self.tickets.clone_with_type()
    }

    /// After a write: the change shows in the next list.
    fn committed(&self) {
        self.list_cache.invalidate();
    }

    pub(crate) async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        // The public list: unreserved tickets, newest first, paged by id.
        let available = IndexModel::builder()
            .keys(doc! { "orderId": 1, "_id": -1 })
            .options(IndexOptions::builder().name("available".to_owned()).build())
            .build();
        self.tickets.create_index(available).await?;
        // A ticket's orders, which decide who holds it.
        let by_ticket = IndexModel::builder()
            .keys(doc! { "ticketId": 1 })
            .options(IndexOptions::builder().name("by_ticket".to_owned()).build())
            .build();
        self.orders_seen.create_index(by_ticket).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn create(
        &self,
        title: String,
        price: f64,
        user_id: String,
    ) -> Result<TicketDoc, StoreError> {
        let ticket = TicketDoc {
            id: ObjectId::new(),
            title,
            price,
            user_id,
            version: 0,
            order_id: None,
        };
        let event = TicketCreated(ticket.event_data());
        self.outbox.insert(&self.tickets, &ticket, &event).await?;
        self.committed();
        tracing::info!(ticket_id = %ticket.id, version = 0, "ticket created");
        Ok(ticket)
    }

    pub(crate) async fn find(&self, id: ObjectId) -> Result<Option<TicketDoc>, StoreError> {
        Ok(self.tickets.find_one(doc! { "_id": id }).await?)
    }

    pub(crate) async fn list_available(
        &self,
        limit: u32,
        after: Option<ObjectId>,
    ) -> Result<Listing, StoreError> {
        let mut filter = doc! { "orderId": null };
        if let Some(after) = after {
            filter.insert("_id", doc! { "$lt": after });
        }
        let mut tickets: Vec<TicketDoc> = self
            .tickets
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await?
            .try_collect()
            .await?;
        let has_more = tickets.len() > limit as usize;
        tickets.truncate(limit as usize);
        Ok(Listing { tickets, has_more })
    }

    /// Changes title and price for the owner of an unreserved ticket; version + 1.
    #[tracing::instrument(skip_all, fields(ticket_id = %id))]
    pub(crate) async fn update(
        &self,
        id: ObjectId,
        user_id: &str,
        title: String,
        price: f64,
    ) -> Result<TicketDoc, StoreError> {
        let _turn = self.locks.lock(&id).await;
        let result = loop {
            let current = self.find(id).await?.ok_or(StoreError::NotFound)?;
            if current.user_id != user_id {
                return Err(StoreError::NotOwner);
            }
            if current.order_id.is_some() {
                return Err(StoreError::Reserved);
            }
            let previous = current.version;
            let updated = TicketDoc {
                title: title.clone(),
                price,
                version: previous + 1,
                ..current
            };
            let set = doc! { "title": &updated.title, "price": price, "version": updated.version };
            // The guard repeats the rules, so a change by another replica since the read (a
            // reservation, or an update) makes this a miss, and the rules are read again.
            let guard = doc! { "version": previous, "orderId": null };
            let event = TicketUpdated(updated.event_data());
            if self
                .outbox
                .update(&self.tickets, id, guard, set, &event)
                .await?
            {
                break updated;
            }
        };
        self.committed();
        tracing::info!(version = result.version, "ticket updated");
        Ok(result)
    }

    /// Writes `updated` over the record at `previous` version with its event, inside the
    /// caller's transaction; the event goes to the relay once that commits.
    async fn write_version(
        &self,
        session: &mut mongodb::ClientSession,
        updated: &TicketDoc,
        previous: i64,
    ) -> mongodb::error::Result<PendingEvent> {
        let set = doc! {
            "title": &updated.title,
            "price": updated.price,
            "version": updated.version,
            "orderId": updated.order_id.as_deref(),
        };
        let event = self.outbox.event(&TicketUpdated(updated.event_data()))?;
        let written = self
            .tickets
            .update_one(
                doc! { "_id": updated.id, "version": previous },
                event.update(set)?,
            )
            .session(&mut *session)
            .await?;
        if written.matched_count != 1 {
            // Inside a transaction a concurrent writer shows up as a write conflict, which the
            // driver retries; reaching this means the record vanished.
            return Err(mongodb::error::Error::custom(format!(
                "ticket {} changed under us",
                updated.id
            )));
        }
        Ok(event)
    }

    /// Marks the ticket reserved by the order (order created, version 0).
    #[tracing::instrument(skip_all, fields(order_id = %order.id, ticket_id = %order.ticket.id))]
    pub(crate) async fn reserve(&self, order: &OrderCreated) -> anyhow::Result<Applied> {
        let seen = OrderSeen {
            id: &order.id,
            version: order.version,
            ticket_id: &order.ticket.id,
            status: order.status.as_str(),
        };
        self.apply_order(seen).await
    }

    /// Frees the ticket if this order still holds it (order cancelled).
    #[tracing::instrument(skip_all, fields(order_id = %order.id, ticket_id = %order.ticket.id))]
    pub(crate) async fn release(&self, order: &OrderCancelled) -> anyhow::Result<Applied> {
        let seen = OrderSeen {
            id: &order.id,
            version: order.version,
            ticket_id: &order.ticket.id,
            status: "cancelled",
        };
        self.apply_order(seen).await
    }

    /// Applies one version of an order to its ticket, in one transaction with the replica of
    /// orders (`orders_seen`), so that versions apply in order and each once.
    ///
    /// Who holds the ticket is then read from that replica, not from the event: orders lets
    /// one order at a time hold a ticket, and events of different orders arrive in any order
    /// (two processes share a consumer, redeliveries come late), so only the orders seen so
    /// far, once all have arrived, say which one orders has active.
    async fn apply_order(&self, order: OrderSeen<'_>) -> anyhow::Result<Applied> {
        let ticket_id = ObjectId::parse_str(order.ticket_id)?;
        let _turn = self.locks.lock(&ticket_id).await;
        let mut tx = Transaction::start(&self.client).await?;
        let applied = loop {
            let result = async {
                let session = tx.session();
                let seen = doc! { "ticketId": order.ticket_id, "status": order.status };
                let applied = replica::apply(
                    &self.orders_seen,
                    order.id,
                    order.version,
                    seen,
                    Some(&mut *session),
                )
                .await?;
                if applied != Applied::Applied {
                    return Ok((applied, None));
                }
                self.turns
                    .update_one(doc! { "_id": ticket_id }, doc! { "$inc": { "applies": 1 } })
                    .upsert(true)
                    .session(&mut *session)
                    .await?;
                let current = self
                    .tickets
                    .find_one(doc! { "_id": ticket_id })
                    .session(&mut *session)
                    .await?
                    .and_then(|t| t.order_id);
                let holder = self
                    .holder(session, order.ticket_id, current.as_deref())
                    .await?;
                if current == holder {
                    return Ok((Applied::Applied, None));
                }
                let event = self.set_order(session, ticket_id, holder).await?;
                Ok((Applied::Applied, Some(event)))
            }
            .await;
            if let Some(applied) = tx.finish(result).await? {
                break applied;
            }
        };
        Ok(self.committed_with(ticket_id, applied))
    }

    /// Who holds the ticket by the orders seen so far: the one order not cancelled. While
    /// cancellations are still on their way there may be several; the current holder then
    /// stays if it is one of them.
    async fn holder(
        &self,
        session: &mut mongodb::ClientSession,
        ticket_id: &str,
        current: Option<&str>,
    ) -> mongodb::error::Result<Option<String>> {
        use futures::TryStreamExt as _;
        let open: Vec<Document> = self
            .orders_seen
            .find(doc! { "ticketId": ticket_id, "status": { "$ne": "cancelled" } })
            .session(&mut *session)
            .await?
            .stream(session)
            .try_collect()
            .await?;
        let ids: Vec<&str> = open.iter().filter_map(|o| o.get_str("_id").ok()).collect();
        Ok(match current {
            Some(current) if ids.contains(&current) => Some(current.to_owned()),
            _ => ids.first().map(|id| (*id).to_owned()),
        })
    }

    /// After a transaction's commit: the change shows in the next list, and the event it
    /// wrote, if any, goes to the relay.
    fn committed_with(
        &self,
        ticket_id: ObjectId,
        (applied, event): (Applied, Option<PendingEvent>),
    ) -> Applied {
        self.committed();
        if let Some(event) = event {
            self.outbox.written(&self.tickets, ticket_id, event);
        }
        applied
    }

    async fn set_order(
        &self,
        session: &mut mongodb::ClientSession,
        ticket_id: ObjectId,
        order_id: Option<String>,
    ) -> mongodb::error::Result<PendingEvent> {
        let Some(current) = self
            .tickets
            .find_one(doc! { "_id": ticket_id })
            .session(&mut *session)
            .await?
        else {
            return Err(mongodb::error::Error::custom(format!(
                "ticket {ticket_id} not found"
            )));
        };
        let updated = TicketDoc {
            order_id,
            version: current.version + 1,
            ..current.clone()
        };
        let event = self
            .write_version(session, &updated, current.version)
            .await?;
        tracing::info!(
            version = updated.version,
            reserved = updated.order_id.is_some(),
            "ticket reservation changed"
        );
        Ok(event)
    }
}
