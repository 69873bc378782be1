//! `expiration:complete` cancels the order unless it was paid; cancelling publishes
//! `order:cancelled`, which frees the ticket.

use common::events::{Delivery, ExpirationComplete, Handler, Outcome};
use mongodb::bson::oid::ObjectId;

use crate::store::{OrderStore, StoreError};

pub(crate) struct ExpirationHandler(pub(crate) OrderStore);

impl Handler<ExpirationComplete> for ExpirationHandler {
    async fn handle(
        &self,
        event: ExpirationComplete,
        _delivery: &Delivery,
    ) -> anyhow::Result<Outcome> {
        let id = ObjectId::parse_str(&event.order_id)?;
        match self.0.cancel(id, None).await {
            Ok(_) => Ok(Outcome::Ack),
            // A paid order is final: its expiration changes nothing.
            Err(StoreError::Paid) => {
                tracing::info!(order_id = %id, "paid order expired: nothing to do");
                Ok(Outcome::Ack)
            }
            Err(StoreError::NotFound) => Ok(Outcome::Retry(format!("order {id} not found"))),
            Err(error) => Err(error.into()),
        }
    }
}
