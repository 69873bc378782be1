//! `ticket:created` and `ticket:updated`, on one consumer, keep the replica of tickets:
//! version v is applied only on top of v−1, duplicates are acked and ignored, versions from
//! the future wait.

use common::events::{Delivery, Handler, Outcome, TicketChanged};

use crate::store::OrderStore;

pub(crate) struct TicketReplicaHandler(pub(crate) OrderStore);

impl Handler<TicketChanged> for TicketReplicaHandler {
    /// Few lanes, large batches: the replica writes what waited in a lane as one command, and
    /// mongod's cost is per command (`docs/performance.md`).
    const LANES: usize = 4;

    async fn handle(&self, event: TicketChanged, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        let ticket = &event.0;
        let applied = self.0.apply_ticket(ticket).await?;
        Ok(applied.outcome("ticket", ticket.version))
    }

    async fn handle_all(&self, events: &[&TicketChanged]) -> anyhow::Result<bool> {
        let tickets: Vec<&common::events::TicketData> = events.iter().map(|e| &e.0).collect();
        self.0.apply_tickets(&tickets).await
    }
}
