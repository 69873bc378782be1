//! What the orders service does with other services' events.

mod expiration;
mod payment;
mod tickets;

pub(crate) use expiration::ExpirationHandler;
pub(crate) use payment::PaymentHandler;
pub(crate) use tickets::TicketReplicaHandler;
