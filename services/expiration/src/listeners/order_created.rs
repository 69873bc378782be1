//! `order:created` schedules the order's expiration at its `expiresAt`.

use anyhow::Context as _;
use common::events::{Delivery, Handler, OrderCreated, Outcome};
use mongodb::bson::DateTime;

use crate::store::Schedule;

pub(crate) struct OrderCreatedHandler(pub(crate) Schedule);

impl Handler<OrderCreated> for OrderCreatedHandler {
    async fn handle(&self, event: OrderCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        let at = DateTime::parse_rfc3339_str(&event.expires_at)
            .with_context(|| format!("expiresAt {:?}", event.expires_at))?;
        self.0.schedule(&event.id, at).await?;
        Ok(Outcome::Ack)
    }
}
