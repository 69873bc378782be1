//! Tickets in MongoDB. Every change writes its event into the ticket's document (the outbox
//! publishes it), and every write is guarded by the version it read, so concurrent changes
//! never silently overwrite each other: the loser reads again.

use common::events::replica::Applied;
use common::events::{
    OrderCancelled, OrderCreated, Outbox, TicketCreated, TicketData, TicketUpdated,
};
use common::mongo::KeyLocks;
use futures::TryStreamExt as _;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use mongodb::options::{FindOneOptions, FindOptions, IndexOptions, ReadConcern};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::known::{Held, Known};
use crate::list_cache::ListCache;
use crate::orders_seen::{self, SeenOrder, Step};

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

/// A ticket as first stored: it has seen no orders yet.
#[derive(Serialize)]
struct NewTicket {
    #[serde(flatten)]
    ticket: TicketDoc,
    orders: Vec<SeenOrder>,
}

/// One version of an order, as the tickets service keeps it.
struct OrderSeen<'a> {
    id: &'a str,
    version: i64,
    ticket_id: &'a str,
    status: &'a str,
}

impl OrderSeen<'_> {
    fn seen(&self) -> SeenOrder {
        SeenOrder {
            id: self.id.to_owned(),
            version: self.version,
            status: self.status.to_owned(),
        }
    }
}

/// Guarded writes of one change that may miss in a row (another process changed the ticket
/// each time) before it gives up, so that a guard that can never match does not spin.
const MAX_MISSES: u32 = 32;

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("ticket not found")]
    NotFound,
    #[error("not the ticket's owner")]
    NotOwner,
    #[error("ticket is reserved")]
    Reserved,
    /// Every write missed its guard: the ticket changes faster than it can be read.
    #[error("ticket changed under {MAX_MISSES} writes in a row")]
    Contended,
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
}

impl From<StoreError> for common::ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::NotOwner => Self::NotAuthorized,
            StoreError::Reserved => Self::bad_request("Cannot edit a reserved ticket"),
            StoreError::Contended => Self::Overloaded {
                retry_after: std::time::Duration::from_secs(1),
            },
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
    tickets: Collection<TicketDoc>,
    /// Orders moved out of their ticket's document (`orders_seen::KEPT`), and those of
    /// tickets last written before orders lived in the ticket.
    orders_seen: Collection<Document>,
    outbox: Outbox,
    /// The tickets this process last read or wrote, to write the next change without a read.
    known: std::sync::Arc<Known>,
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
            tickets: db.collection(TICKETS),
            orders_seen: db.collection("orders_seen"),
            outbox,
            known: std::sync::Arc::default(),
            locks: std::sync::Arc::new(KeyLocks::new(1024)),
            list_cache: std::sync::Arc::default(),
        }
    }

    /// The public list as served, which this store's commits invalidate.
    pub(crate) fn list_cache(&self) -> &std::sync::Arc<ListCache> {
        &self.list_cache
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
        // Orders moved out of a ticket's document, by ticket.
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
        // With its (empty) orders, so that a process that reads it before its first order
        // does not look for them in `orders_seen`, as it must for an earlier version's ticket.
        let stored = NewTicket {
            ticket: ticket.clone(),
            orders: Vec::new(),
        };
        self.outbox
            .insert(&self.tickets.clone_with_type(), &stored, &event)
            .await?;
        self.committed();
        self.known.put(Held {
            ticket: ticket.clone(),
            orders: Some(Vec::new()),
            applies: None,
            elsewhere: false,
        });
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
        let (mut held, mut fresh) = match self.known.get(&id) {
            Some(held) => (held, false),
            None => (self.fresh(id).await?.ok_or(StoreError::NotFound)?, true),
        };
        let mut misses = 0;
        let result = loop {
            let current = &held.ticket;
            // The owner never changes, so even a remembered ticket answers this.
            if current.user_id != user_id {
                return Err(StoreError::NotOwner);
            }
            if current.order_id.is_some() {
                if fresh {
                    return Err(StoreError::Reserved);
                }
                held = self.fresh(id).await?.ok_or(StoreError::NotFound)?;
                fresh = true;
                continue;
            }
            let previous = current.version;
            let updated = TicketDoc {
                title: title.clone(),
                price,
                version: previous + 1,
                ..current.clone()
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
                self.known.put(Held {
                    ticket: updated.clone(),
                    ..held
                });
                break updated;
            }
            misses += 1;
            if misses > MAX_MISSES {
                return Err(StoreError::Contended);
            }
            held = self.fresh(id).await?.ok_or(StoreError::NotFound)?;
            fresh = true;
        };
        self.committed();
        tracing::info!(version = result.version, "ticket updated");
        Ok(result)
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
            status: orders_seen::CANCELLED,
        };
        self.apply_order(seen).await
    }

    /// Applies one version of an order to its ticket: the orders the ticket has seen live in
    /// its own document (`orders_seen.rs`), so the apply is one write guarded by what it
    /// assumes of the ticket (its version and its count of order `applies`), made on the
    /// ticket as this process last saw it (`known.rs`); a write by anyone else in between
    /// makes it a miss, and it reads the ticket and tries again.
    ///
    /// Who holds the ticket is then read from those orders, not from the event: orders lets
    /// one order at a time hold a ticket, and events of different orders arrive in any order
    /// (two processes share a consumer, redeliveries come late), so only the orders seen so
    /// far, once all have arrived, say which one orders has active.
    async fn apply_order(&self, order: OrderSeen<'_>) -> anyhow::Result<Applied> {
        let ticket_id = ObjectId::parse_str(order.ticket_id)?;
        let _turn = self.locks.lock(&ticket_id).await;
        let (mut held, mut fresh) = match self.known.get(&ticket_id) {
            Some(held) => (held, false),
            None => (self.fresh_or_missing(ticket_id).await?, true),
        };
        let mut misses = 0;
        loop {
            let mut orders = match &held.orders {
                Some(orders) => orders.clone(),
                // Created and last written before orders lived in the ticket.
                None => self.orders_kept_elsewhere(order.ticket_id, None).await?,
            };
            let known = self
                .known_order(&orders, held.elsewhere, order.id, None)
                .await?;
            match orders_seen::step(known.as_ref(), order.version) {
                Step::Apply => {}
                // Only a fresh read decides that nothing is to be done (yet).
                _ if !fresh => {
                    held = self.fresh_or_missing(ticket_id).await?;
                    fresh = true;
                    continue;
                }
                Step::Stale => return self.confirm_stale(ticket_id, &order).await,
                Step::Future { have } => return Ok(Applied::Future { have }),
            }
            orders_seen::record(&mut orders, order.seen());
            let holder = orders_seen::holder(&orders, held.ticket.order_id.as_deref());
            let spilled = orders_seen::spill(&mut orders, order.id);
            self.keep_elsewhere(order.ticket_id, &spilled).await?;
            let elsewhere = held.elsewhere || !spilled.is_empty();
            let applies = held.applies.unwrap_or(0) + 1;
            let mut set = doc! {
                "orders": mongodb::bson::to_bson(&orders)?,
                "applies": applies,
                "ordersElsewhere": elsewhere,
            };
            let guard = doc! {
                "version": held.ticket.version,
                "applies": held.applies,
            };
            let changed = (holder != held.ticket.order_id).then(|| TicketDoc {
                order_id: holder,
                version: held.ticket.version + 1,
                ..held.ticket.clone()
            });
            let (update, event) = match &changed {
                None => (doc! { "$set": set }, None),
                Some(updated) => {
                    set.insert("orderId", updated.order_id.as_deref());
                    set.insert("version", updated.version);
                    let event = self.outbox.event(&TicketUpdated(updated.event_data()))?;
                    (event.update(set)?, Some(event))
                }
            };
            let written = self
                .outbox
                .apply(&self.tickets, ticket_id, guard, update, event)
                .await?;
            if !written {
                misses += 1;
                anyhow::ensure!(
                    misses <= MAX_MISSES,
                    "ticket {ticket_id} changed under {MAX_MISSES} writes in a row"
                );
                held = self.fresh_or_missing(ticket_id).await?;
                fresh = true;
                continue;
            }
            self.committed();
            self.known.put(Held {
                ticket: changed.clone().unwrap_or(held.ticket),
                orders: Some(orders),
                applies: Some(applies),
                elsewhere,
            });
            if let Some(updated) = changed {
                tracing::info!(
                    version = updated.version,
                    reserved = updated.order_id.is_some(),
                    "ticket reservation changed"
                );
            }
            return Ok(Applied::Applied);
        }
    }

    /// The ticket as stored now, remembered for the next change.
    async fn fresh(&self, ticket_id: ObjectId) -> mongodb::error::Result<Option<Held>> {
        let held = self.read(ticket_id, None).await?;
        if let Some(held) = &held {
            self.known.put(held.clone());
        }
        Ok(held)
    }

    /// [`TicketStore::fresh`] for an order's apply, where a missing ticket is an error.
    async fn fresh_or_missing(&self, ticket_id: ObjectId) -> anyhow::Result<Held> {
        self.fresh(ticket_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("ticket {ticket_id} not found"))
    }

    /// The ticket with the orders it has seen, as stored (`read_concern` `None`: local).
    async fn read(
        &self,
        ticket_id: ObjectId,
        read_concern: Option<ReadConcern>,
    ) -> mongodb::error::Result<Option<Held>> {
        let raw: Collection<Document> = self.tickets.clone_with_type();
        let Some(document) = raw
            .find_one(doc! { "_id": ticket_id })
            .with_options(read_concern.map(|c| FindOneOptions::builder().read_concern(c).build()))
            .await?
        else {
            return Ok(None);
        };
        let stored = |e: mongodb::bson::de::Error| {
            mongodb::error::Error::custom(format!("stored ticket {ticket_id}: {e}"))
        };
        let orders = match document.get("orders") {
            Some(orders) => Some(mongodb::bson::from_bson(orders.clone()).map_err(stored)?),
            None => None,
        };
        Ok(Some(Held {
            applies: integer(&document, "applies"),
            elsewhere: document.get_bool("ordersElsewhere").unwrap_or(false),
            orders,
            ticket: mongodb::bson::from_document(document).map_err(stored)?,
        }))
    }

    /// What the ticket has seen of the order `id`: among `orders`, or among those moved out.
    async fn known_order(
        &self,
        orders: &[SeenOrder],
        elsewhere: bool,
        id: &str,
        read_concern: Option<ReadConcern>,
    ) -> mongodb::error::Result<Option<SeenOrder>> {
        if let Some(seen) = orders.iter().find(|seen| seen.id == id) {
            return Ok(Some(seen.clone()));
        }
        if !elsewhere {
            return Ok(None);
        }
        let options = read_concern.map(|c| FindOneOptions::builder().read_concern(c).build());
        let found = self
            .orders_seen
            .find_one(doc! { "_id": id })
            .with_options(options)
            .await?;
        Ok(found.and_then(|seen| seen_order(&seen)))
    }

    /// Every order of the ticket in the `orders_seen` collection, in the order written.
    async fn orders_kept_elsewhere(
        &self,
        ticket_id: &str,
        read_concern: Option<ReadConcern>,
    ) -> mongodb::error::Result<Vec<SeenOrder>> {
        let stored: Vec<Document> = self
            .orders_seen
            .find(doc! { "ticketId": ticket_id })
            .with_options(read_concern.map(|c| FindOptions::builder().read_concern(c).build()))
            .await?
            .try_collect()
            .await?;
        Ok(stored.iter().filter_map(seen_order).collect())
    }

    /// Writes orders moving out of the ticket's document into `orders_seen`, before the
    /// document drops them: a crash in between leaves them in both, never in neither.
    async fn keep_elsewhere(
        &self,
        ticket_id: &str,
        spilled: &[SeenOrder],
    ) -> mongodb::error::Result<()> {
        for order in spilled {
            let fields =
                doc! { "ticketId": ticket_id, "status": &order.status, "version": order.version };
            self.orders_seen
                .update_one(doc! { "_id": &order.id }, doc! { "$set": fields })
                .upsert(true)
                .await?;
        }
        Ok(())
    }

    /// A version found applied is acknowledged only if a majority holds it: a write still in
    /// flight may be rolled back by an election, and the message acked on its strength would
    /// be lost. Otherwise it is retried, and finds the write committed or gone.
    async fn confirm_stale(
        &self,
        ticket_id: ObjectId,
        order: &OrderSeen<'_>,
    ) -> anyhow::Result<Applied> {
        let majority = || Some(ReadConcern::majority());
        let Some(held) = self.read(ticket_id, majority()).await? else {
            anyhow::bail!("ticket {ticket_id} not found");
        };
        let orders = match held.orders {
            Some(orders) => orders,
            None => {
                self.orders_kept_elsewhere(order.ticket_id, majority())
                    .await?
            }
        };
        let known = self
            .known_order(&orders, held.elsewhere, order.id, majority())
            .await?;
        Ok(match orders_seen::step(known.as_ref(), order.version) {
            Step::Stale => Applied::Stale,
            _ => Applied::Future {
                have: known.map(|seen| seen.version),
            },
        })
    }
}

/// An entry of the `orders_seen` collection as a [`SeenOrder`].
fn seen_order(stored: &Document) -> Option<SeenOrder> {
    Some(SeenOrder {
        id: stored.get_str("_id").ok()?.to_owned(),
        version: integer(stored, "version")?,
        status: stored.get_str("status").ok()?.to_owned(),
    })
}

/// A stored integer, 32 or 64 bits: the guards compare numbers across types, and one written
/// by hand as a 32-bit integer must not make every guard miss.
fn integer(stored: &Document, key: &str) -> Option<i64> {
    match stored.get(key)? {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        _ => None,
    }
}
