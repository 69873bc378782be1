//! What the payments service does with other services' events.

mod order_replica;

pub(crate) use order_replica::OrderReplicaHandler;
