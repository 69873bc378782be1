//! `payment:created` completes the order: status `complete`, version + 1. A complete order is
//! final — neither its expiration nor its owner can cancel it.

use common::events::{Delivery, Handler, Outcome, PaymentCreated};
use mongodb::bson::oid::ObjectId;

use crate::store::{OrderStore, StoreError};

pub(crate) struct PaymentHandler(pub(crate) OrderStore);

impl Handler<PaymentCreated> for PaymentHandler {
    async fn handle(&self, event: PaymentCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        let id = ObjectId::parse_str(&event.order_id)?;
        match self.0.complete(id).await {
            Ok(()) => Ok(Outcome::Ack),
            Err(StoreError::NotFound) => Ok(Outcome::Retry(format!("order {id} not found"))),
            Err(error) => Err(error.into()),
        }
    }
}
