//! The local test gateway: Stripe's test tokens without Stripe, for development only (it is
//! chosen with `PAYMENTS_GATEWAY=local` and refused with `COOKIE_SECURE=true`). `tok_chargeDeclined`
//! is declined; any other token succeeds. Charges live in this process's memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use mongodb::bson::DateTime;

use super::{Call, Charge, FoundCharge, GatewayError, PaymentGateway};

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    order_id: String,
    created: i64,
    refunded: bool,
}

/// Charges by idempotency key, like Stripe's answer to a repeated key.
#[derive(Debug, Default)]
pub struct LocalGateway {
    charges: Mutex<HashMap<String, Stored>>,
}

impl LocalGateway {
    fn charges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stored>> {
        self.charges.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PaymentGateway for LocalGateway {
    fn charge(&self, charge: Charge) -> Call<'_, String> {
        Box::pin(async move {
            if charge.token == "tok_chargeDeclined" {
                return Err(GatewayError::Declined("Your card was declined.".to_owned()));
            }
            let mut charges = self.charges();
            let stored = charges
                .entry(charge.idempotency_key.clone())
                .or_insert_with(|| Stored {
                    id: format!("ch_local_{}", charge.idempotency_key),
                    order_id: charge.order_id,
                    created: DateTime::now().timestamp_millis() / 1000,
                    refunded: false,
                });
            Ok(stored.id.clone())
        })
    }

    fn refund(&self, charge_id: String, _order_id: String) -> Call<'_, Option<String>> {
        Box::pin(async move {
            let mut charges = self.charges();
            let stored = charges
                .values_mut()
                .find(|stored| stored.id == charge_id)
                .ok_or_else(|| GatewayError::Unavailable(format!("no charge {charge_id}")))?;
            if stored.refunded {
                return Ok(None);
            }
            stored.refunded = true;
            Ok(Some(format!("re_local_{charge_id}")))
        })
    }

    fn charges_for(&self, order_id: String) -> Call<'_, Vec<FoundCharge>> {
        Box::pin(async move {
            Ok(self
                .charges()
                .values()
                .filter(|stored| stored.order_id == order_id)
                .map(|stored| FoundCharge {
                    id: stored.id.clone(),
                    succeeded: true,
                    refunded: stored.refunded,
                    created: stored.created,
                })
                .collect())
        })
    }
}
