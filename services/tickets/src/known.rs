//! What this process last read or wrote of each ticket, so that its next change is written
//! without reading the ticket first.
//!
//! Nothing is decided on a remembered ticket alone: every write stays guarded by what it
//! assumes (the ticket's version, and its count of order applies), so a ticket another process
//! changed since makes the write a miss, and the store reads the ticket and tries again.
//! A refusal that can change (reserved) and "already applied" are decided on a fresh read;
//! the owner never changes.

use mongodb::bson::oid::ObjectId;

use crate::orders_seen::SeenOrder;
use crate::store::TicketDoc;

/// Tickets remembered; past this the memory starts over (a miss costs one read).
pub(crate) const CAPACITY: usize = 16_384;

/// A ticket as stored, with what its order applies need.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) ticket: TicketDoc,
    /// The orders it has seen (those not moved out); `None` when its document has none yet
    /// (created and last written by an earlier version: they are in `orders_seen`).
    pub(crate) orders: Option<Vec<SeenOrder>>,
    /// Order applies so far; the write guard that orders concurrent applies.
    pub(crate) applies: Option<i64>,
    /// Whether some of its orders live in `orders_seen` instead.
    pub(crate) elsewhere: bool,
}

/// The tickets this process last read or wrote.
#[derive(Debug)]
pub(crate) struct Known(common::recent::Recent<ObjectId, Held>);

impl Default for Known {
    fn default() -> Self {
        Self(common::recent::Recent::new(CAPACITY))
    }
}

impl Known {
    /// The ticket as this process last saw it, if it remembers it.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<Held> {
        self.0.get(id)
    }

    /// Remembers `held` as the ticket's latest state.
    pub(crate) fn put(&self, held: Held) {
        self.0.put(held.ticket.id, held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: ObjectId, version: i64) -> Held {
        Held {
            ticket: TicketDoc {
                id,
                title: "t".to_owned(),
                price: 1.0,
                user_id: "u".to_owned(),
                version,
                order_id: None,
            },
            orders: None,
            applies: None,
            elsewhere: false,
        }
    }

    #[test]
    fn the_latest_state_is_kept_and_memory_stays_bounded() {
        let known = Known::default();
        let id = ObjectId::new();
        known.put(held(id, 1));
        known.put(held(id, 2));
        assert_eq!(known.get(&id).map(|h| h.ticket.version), Some(2));
        for _ in 0..CAPACITY + 10 {
            known.put(held(ObjectId::new(), 0));
        }
        assert!(known.0.len() <= CAPACITY);
    }
}
