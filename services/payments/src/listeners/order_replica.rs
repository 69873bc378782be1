//! `order:created` and `order:cancelled` keep the replica of orders, with the same versioned,
//! idempotent apply as every replica. A cancellation that meets a succeeded charge starts its
//! refund.

use common::events::{Delivery, Handler, OrderCancelled, OrderCreated, Outcome};

use crate::saga::Saga;

pub(crate) struct OrderReplicaHandler(pub(crate) Saga);

impl Handler<OrderCreated> for OrderReplicaHandler {
    /// Few lanes, larger batches: what waited in a lane enters the replica in one command.
    const LANES: usize = 4;

    async fn handle(&self, event: OrderCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        Ok(self
            .0
            .store
            .order_created(&event)
            .await?
            .outcome("order", event.version))
    }

    async fn handle_all(&self, events: &[&OrderCreated]) -> anyhow::Result<bool> {
        self.0.store.orders_created(events).await
    }
}

impl Handler<OrderCancelled> for OrderReplicaHandler {
    async fn handle(&self, event: OrderCancelled, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        let (applied, order) = self.0.store.order_cancelled(&event).await?;
        if let Some(order) = order {
            self.0.compensate(&order).await?;
        }
        Ok(applied.outcome("order", event.version))
    }
}
