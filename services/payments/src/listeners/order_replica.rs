//! `order:created` and `order:cancelled` keep the replica of orders, with the same versioned,
//! idempotent apply as every replica.

use common::events::{Delivery, Handler, OrderCancelled, OrderCreated, Outcome};

use crate::store::PaymentStore;

pub(crate) struct OrderReplicaHandler(pub(crate) PaymentStore);

impl Handler<OrderCreated> for OrderReplicaHandler {
    async fn handle(&self, event: OrderCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        Ok(self
            .0
            .order_created(&event)
            .await?
            .outcome("order", event.version))
    }
}

impl Handler<OrderCancelled> for OrderReplicaHandler {
    async fn handle(&self, event: OrderCancelled, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        Ok(self
            .0
            .order_cancelled(&event)
            .await?
            .outcome("order", event.version))
    }
}
