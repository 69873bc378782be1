//! What the expiration service does with other services' events.

mod order_created;

pub(crate) use order_created::OrderCreatedHandler;
