//! What this process last read or wrote of each ticket, so that its next change is written
//! without reading the ticket first.
//!
//! Nothing is decided on a remembered ticket alone: every write stays guarded by what it
//! assumes (the ticket's version, and its count of order applies), so a ticket another process
//! changed since makes the write a miss, and the store reads the ticket and tries again.
//! A refusal that can change (reserved) and "already applied" are decided on a fresh read;
//! the owner never changes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use mongodb::bson::oid::ObjectId;

use crate::orders_seen::SeenOrder;
use crate::store::TicketDoc;

/// Tickets remembered; past this the memory starts over (a miss costs one read).
const CAPACITY: usize = 16_384;

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
#[derive(Debug, Default)]
pub(crate) struct Known(Mutex<HashMap<ObjectId, Held>>);

impl Known {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Held>> {
        // Hints only: a map left half-updated by a panic can only cause a guard miss.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ticket as this process last saw it, if it remembers it.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<Held> {
        self.map().get(id).cloned()
    }

    /// Remembers `held` as the ticket's latest state.
    pub(crate) fn put(&self, held: Held) {
        let mut map = self.map();
        if map.len() >= CAPACITY && !map.contains_key(&held.ticket.id) {
            map.clear();
        }
        map.insert(held.ticket.id, held);
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
        assert!(known.map().len() <= CAPACITY);
    }
}
