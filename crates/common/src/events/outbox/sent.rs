//! Events the relay sent from memory, waiting a moment before they are removed from their
//! documents: a document changed again meanwhile (a ticket updated in a burst, an order
//! created then cancelled) loses all its sent events in one write instead of one per event,
//! and a removal is a write like any other.
//!
//! Scans skip them meanwhile: this process's, because they are among its removed events from
//! the moment they are sent; every other replica's, because the background scan leaves events
//! younger than its grace (`relay.rs`) to their writer. A process that dies before removing
//! them leaves them to the next scan, which publishes them again under the same
//! `Nats-Msg-Id`: JetStream drops the duplicate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mongodb::bson::Bson;

use super::{BATCH, Pending};

/// How long a sent event stays in its document before it is removed.
pub(super) const REMOVE_AFTER: Duration = Duration::from_millis(100);

/// The sent events not yet removed, oldest first.
#[derive(Debug, Default)]
pub(super) struct Sent {
    waiting: VecDeque<(Pending, Instant)>,
}

impl Sent {
    pub(super) fn add(&mut self, sent: Vec<Pending>, now: Instant) {
        self.waiting
            .extend(sent.into_iter().map(|pending| (pending, now)));
    }

    /// What to remove at `now`: everything once a batch waits, else what has waited
    /// [`REMOVE_AFTER`], and with it whatever else waits in the same documents.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Pending> {
        if self.waiting.len() >= BATCH {
            return self.all();
        }
        let ripe = self
            .waiting
            .iter()
            .take_while(|(_, at)| now.duration_since(*at) >= REMOVE_AFTER)
            .count();
        if ripe == 0 {
            return Vec::new();
        }
        let mut due: Vec<Pending> = self.waiting.drain(..ripe).map(|(p, _)| p).collect();
        // Fewer than a batch wait, so a linear look is cheap (`Bson` has no `Hash`).
        let documents: Vec<(usize, &Bson)> = due
            .iter()
            .map(|pending| (pending.collection, &pending.document))
            .collect();
        let (along, rest): (VecDeque<_>, VecDeque<_>) = self
            .waiting
            .drain(..)
            .partition(|(pending, _)| documents.contains(&(pending.collection, &pending.document)));
        self.waiting = rest;
        due.extend(along.into_iter().map(|(pending, _)| pending));
        due
    }

    /// Everything waiting (shutting down).
    pub(super) fn all(&mut self) -> Vec<Pending> {
        self.waiting.drain(..).map(|(pending, _)| pending).collect()
    }

    /// When [`due`](Self::due) next has something.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.waiting.front().map(|(_, at)| *at + REMOVE_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;

    use super::super::EventDoc;
    use super::*;

    fn pending(document: i32) -> Pending {
        Pending {
            collection: 0,
            document: Bson::Int32(document),
            event: EventDoc {
                id: ObjectId::new(),
                subject: "ticket:updated".to_owned(),
                event_id: String::new(),
                payload: String::new(),
                created_at: mongodb::bson::DateTime::now(),
                traceparent: None,
            },
        }
    }

    fn documents(due: &[Pending]) -> Vec<i32> {
        due.iter()
            .map(|p| p.document.as_i32().unwrap_or_default())
            .collect()
    }

    #[test]
    fn sent_events_wait_then_go_with_every_later_one_of_their_documents() {
        let start = Instant::now();
        let mut sent = Sent::default();
        sent.add(vec![pending(1), pending(2)], start);
        sent.add(vec![pending(1), pending(3)], start + REMOVE_AFTER / 2);
        assert!(sent.due(start).is_empty(), "not yet");
        assert_eq!(sent.next_at(), Some(start + REMOVE_AFTER));
        let due = sent.due(start + REMOVE_AFTER);
        assert_eq!(
            documents(&due),
            [1, 2, 1],
            "document 1's later event goes along"
        );
        assert_eq!(
            sent.next_at(),
            Some(start + REMOVE_AFTER / 2 + REMOVE_AFTER)
        );
        assert_eq!(documents(&sent.all()), [3]);
        assert_eq!(sent.next_at(), None);
    }

    #[test]
    fn a_full_batch_is_removed_at_once() {
        let start = Instant::now();
        let mut sent = Sent::default();
        sent.add((0..BATCH as i32).map(pending).collect(), start);
        assert_eq!(sent.due(start).len(), BATCH);
        assert!(sent.all().is_empty());
    }
}
