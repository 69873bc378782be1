//! `order:created` schedules the order's expiration at its `expiresAt`.

use anyhow::Context as _;
use common::events::{Delivery, Handler, OrderCreated, Outcome};
use mongodb::bson::DateTime;

use crate::store::Schedule;

pub(crate) struct OrderCreatedHandler(pub(crate) Schedule);

impl Handler<OrderCreated> for OrderCreatedHandler {
    /// Few lanes, larger batches: what waited in a lane is scheduled in one command.
    const LANES: usize = 4;

    async fn handle(&self, event: OrderCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        self.0.schedule(&event.id, expires_at(&event)?).await?;
        Ok(Outcome::Ack)
    }

    async fn handle_all(&self, events: &[&OrderCreated]) -> anyhow::Result<bool> {
        let orders = events
            .iter()
            .map(|event| Ok((event.id.as_str(), expires_at(event)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(self.0.schedule_all(&orders).await?)
    }
}

fn expires_at(event: &OrderCreated) -> anyhow::Result<DateTime> {
    DateTime::parse_rfc3339_str(&event.expires_at)
        .with_context(|| format!("expiresAt {:?}", event.expires_at))
}
