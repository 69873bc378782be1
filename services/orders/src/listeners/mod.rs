//! What the orders service does with other services' events.

mod tickets;

pub(crate) use tickets::TicketReplicaHandler;
