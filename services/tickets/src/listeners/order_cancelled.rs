//! `order:cancelled` frees the ticket if that order still holds it.

use common::events::{Delivery, Handler, OrderCancelled, Outcome};

use crate::store::TicketStore;

pub(crate) struct OrderCancelledHandler(pub(crate) TicketStore);

impl Handler<OrderCancelled> for OrderCancelledHandler {
    async fn handle(&self, event: OrderCancelled, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        let applied = self.0.release(&event).await?;
        Ok(applied.outcome("order", event.version))
    }
}
