//! The event backbone: the closed catalog of events, the JetStream bus, the outbox that
//! publishes the events written inside changed documents, durable listeners with
//! dead-lettering, listing and replaying the dead letters, versioned replica updates, and
//! reads that wait for a replicated record made moments ago.

pub mod arrivals;
pub mod bus;
pub mod catalog;
pub mod counters;
pub mod dlq;
pub mod listener;
pub mod outbox;
pub mod replica;

pub use arrivals::{Arrival, Arrivals, Wait};
pub use bus::{EventBus, NatsConfig};
pub use catalog::*;
pub use counters::{ConsumerCounters, ConsumerCounts, EventCounters, SubjectCounts};
pub use dlq::{DeadLetter, DeadLetters};
pub use listener::{Delivery, Handler, Listener, Outcome};
pub use outbox::{Outbox, PendingEvent};
