//! What a bus's outbox relay published and its listeners consumed: atomics on the hot path,
//! read by `/metrics` when it is scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::catalog::Subject;

/// The counters of one event bus. Cheap to clone; every slot is created before the first
/// event, so counting is one `fetch_add`.
#[derive(Clone, Default)]
pub struct EventCounters {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Indexed by `Subject as usize`.
    published: [AtomicU64; Subject::ALL.len()],
    duplicates: [AtomicU64; Subject::ALL.len()],
    publish_failures: [AtomicU64; Subject::ALL.len()],
    consumers: Mutex<Vec<Arc<ConsumerCounters>>>,
}

impl std::fmt::Debug for EventCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventCounters").finish_non_exhaustive()
    }
}

/// How many events of one subject were published, and how many publishes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectCounts {
    /// The subject.
    pub subject: Subject,
    /// Acknowledged by JetStream.
    pub published: u64,
    /// Of those, dropped by JetStream as repeats of a message id it already stored.
    pub duplicates: u64,
    /// Not sent or not acknowledged (the event stayed in the outbox).
    pub failed: u64,
}

impl EventCounters {
    /// JetStream acknowledged an event on `subject` (a duplicate it dropped counts too: the
    /// relay's work is done).
    pub(crate) fn published(&self, subject: Subject) {
        self.inner.published[subject as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// JetStream acknowledged an event on `subject` as a duplicate: it had been published
    /// before.
    pub(crate) fn duplicate(&self, subject: Subject) {
        self.inner.duplicates[subject as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Sending an event on `subject`, or its acknowledgement, failed; it stays in the outbox.
    pub(crate) fn publish_failed(&self, subject: Subject) {
        self.inner.publish_failures[subject as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of durable consumer `name`, created on first use and shared after.
    pub(crate) fn consumer(&self, name: &str) -> Arc<ConsumerCounters> {
        let mut consumers = self
            .inner
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(counters) = consumers.iter().find(|c| c.name == name) {
            return Arc::clone(counters);
        }
        let counters = Arc::new(ConsumerCounters {
            name: name.to_owned(),
            ..ConsumerCounters::default()
        });
        consumers.push(Arc::clone(&counters));
        counters
    }

    /// The subjects published or tried: only what this service publishes, not every subject
    /// of the catalog.
    pub fn subjects(&self) -> Vec<SubjectCounts> {
        Subject::ALL
            .into_iter()
            .map(|subject| {
                let i = subject as usize;
                SubjectCounts {
                    subject,
                    published: self.inner.published[i].load(Ordering::Relaxed),
                    duplicates: self.inner.duplicates[i].load(Ordering::Relaxed),
                    failed: self.inner.publish_failures[i].load(Ordering::Relaxed),
                }
            })
            .filter(|counts| counts.published + counts.failed > 0)
            .collect()
    }

    /// Every consumer counted so far.
    pub fn consumers(&self) -> Vec<Arc<ConsumerCounters>> {
        self.inner
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What one durable consumer did with its deliveries.
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    name: String,
    consumed: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

/// A consumer's counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerCounts {
    /// Delivered to the listener.
    pub consumed: u64,
    /// Handled, or recognised as already applied, and acknowledged.
    pub acked: u64,
    /// Negatively acknowledged, to be redelivered after a delay.
    pub retried: u64,
    /// Copied to the dead-letter stream and terminated.
    pub dead_lettered: u64,
}

impl ConsumerCounters {
    /// The durable consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counters now.
    pub fn counts(&self) -> ConsumerCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConsumerCounts {
            consumed: load(&self.consumed),
            acked: load(&self.acked),
            retried: load(&self.retried),
            dead_lettered: load(&self.dead_lettered),
        }
    }

    /// A message was delivered to the listener.
    pub(crate) fn consumed(&self) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }

    /// It was handled (or was a duplicate) and acknowledged.
    pub(crate) fn acked(&self) {
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    /// It was negatively acknowledged, to be redelivered after a delay.
    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// It was copied to the dead-letter stream and terminated.
    pub(crate) fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_index_their_counters() {
        for (i, subject) in Subject::ALL.into_iter().enumerate() {
            assert_eq!(subject as usize, i);
        }
    }

    #[test]
    fn only_subjects_in_use_are_listed_and_a_consumer_is_counted_once() {
        let counters = EventCounters::default();
        counters.published(Subject::TicketCreated);
        counters.published(Subject::TicketCreated);
        counters.duplicate(Subject::TicketCreated);
        counters.publish_failed(Subject::TicketUpdated);
        assert_eq!(
            counters.subjects(),
            [
                SubjectCounts {
                    subject: Subject::TicketCreated,
                    published: 2,
                    duplicates: 1,
                    failed: 0
                },
                SubjectCounts {
                    subject: Subject::TicketUpdated,
                    published: 0,
                    duplicates: 0,
                    failed: 1
                },
            ]
        );
        let replica = counters.consumer("orders-ticket-created");
        replica.consumed();
        replica.acked();
        assert!(Arc::ptr_eq(
            &replica,
            &counters.consumer("orders-ticket-created")
        ));
        assert_eq!(counters.consumers().len(), 1);
        assert_eq!(
            replica.counts(),
            ConsumerCounts {
                consumed: 1,
                acked: 1,
                ..ConsumerCounts::default()
            }
        );
    }
}
