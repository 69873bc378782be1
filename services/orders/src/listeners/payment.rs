//! Payments' events: `payment:created` completes the order (a complete order is final —
//! neither its expiration nor its owner can cancel it); `payment:refunded` shows on a
//! cancelled order that the charge that came too late went back to the buyer.

use common::events::{Delivery, Handler, Outcome, PaymentCreated, PaymentRefunded};

use crate::store::{OrderStore, StoreError};

pub(crate) struct PaymentHandler(pub(crate) OrderStore);

/// An order not found yet is retried: its creation may still be on its way.
fn outcome(order_id: &str, result: Result<(), StoreError>) -> anyhow::Result<Outcome> {
    match result {
        Ok(()) => Ok(Outcome::Ack),
        Err(StoreError::NotFound) => Ok(Outcome::Retry(format!("order {order_id} not found"))),
        Err(error) => Err(error.into()),
    }
}

impl Handler<PaymentCreated> for PaymentHandler {
    async fn handle(&self, event: PaymentCreated, _delivery: &Delivery) -> anyhow::Result<Outcome> {
        outcome(&event.order_id, self.0.complete(&event).await)
    }
}

impl Handler<PaymentRefunded> for PaymentHandler {
    async fn handle(
        &self,
        event: PaymentRefunded,
        _delivery: &Delivery,
    ) -> anyhow::Result<Outcome> {
        outcome(&event.order_id, self.0.refunded(&event).await)
    }
}
