//! What the tickets service does with other services' events.

mod order_cancelled;
mod order_created;

pub(crate) use order_cancelled::OrderCancelledHandler;
pub(crate) use order_created::OrderCreatedHandler;
