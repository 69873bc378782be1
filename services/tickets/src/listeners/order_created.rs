//! `order:created` reserves the ticket: it gets the order's id and a new version.

use common::events::{Delivery, Handler, OrderCreated, Outcome};

use crate::store::TicketStore;

pub(crate) struct OrderCreatedHandler(pub(crate) TicketStore);

impl Handler<OrderCreated> for OrderCreatedHandler {
    async fn handle(&self, event: OrderCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        let applied = self.0.reserve(&event).await?;
        Ok(applied.outcome("order", event.version))
    }
}
