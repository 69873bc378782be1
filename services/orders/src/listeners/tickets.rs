//! `ticket:created` and `ticket:updated` keep the replica of tickets: version v is applied
//! only on top of v−1, duplicates are acked and ignored, versions from the future wait.

use common::events::{Delivery, Handler, Outcome, TicketCreated, TicketData, TicketUpdated};

use crate::store::OrderStore;

pub(crate) struct TicketReplicaHandler(pub(crate) OrderStore);

impl TicketReplicaHandler {
    async fn apply(&self, ticket: &TicketData) -> anyhow::Result<Outcome> {
        let applied = self.0.apply_ticket(ticket).await?;
        Ok(applied.outcome("ticket", ticket.version))
    }
}

impl Handler<TicketCreated> for TicketReplicaHandler {
    async fn handle(&self, event: TicketCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        self.apply(&event.0).await
    }
}

impl Handler<TicketUpdated> for TicketReplicaHandler {
    async fn handle(&self, event: TicketUpdated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        self.apply(&event.0).await
    }
}
