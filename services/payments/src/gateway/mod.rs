//! Card payments: what the saga asks of a card processor, Stripe's adapter, and the local test
//! gateway.
//!
//! Three calls, Stripe's own: charge a card, refund a charge, and find an order's charges (by
//! the `orderId` every charge carries in its metadata), which is how an attempt whose outcome
//! is unknown gets reconciled.

mod local;
mod stripe;

pub use local::LocalGateway;
pub use stripe::{StripeConfig, StripeGateway};

use futures::future::BoxFuture;

/// One charge to make.
#[derive(Debug, Clone)]
pub struct Charge {
    /// Amount in the currency's smallest unit (cents).
    pub amount_cents: i64,
    /// ISO currency code, lower-case.
    pub currency: &'static str,
    /// The card token from the client (e.g. Stripe's `tok_visa`).
    pub token: String,
    /// The order it pays; stored in the charge's metadata, where reconciliation looks.
    pub order_id: String,
    /// One per attempt to pay an order (never derived from the token): a repeat of the same
    /// attempt is the same charge.
    pub idempotency_key: String,
}

/// A charge as the gateway reports it when asked for an order's charges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCharge {
    /// The gateway's charge id.
    pub id: String,
    /// The card was charged (Stripe: `status` is `succeeded`).
    pub succeeded: bool,
    /// The whole amount went back to the card.
    pub refunded: bool,
    /// When it was made (seconds since the epoch): the oldest success is the one kept.
    pub created: i64,
}

/// Why a call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The card was refused and nothing was charged; the reason is the gateway's, fit to show
    /// the buyer.
    #[error("{0}")]
    Declined(String),
    /// The gateway could not be reached, refused us (key, rate limit) or failed: the outcome
    /// of a charge is unknown until reconciled.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
}

/// What a gateway call eventually gives.
pub type Call<'a, T> = BoxFuture<'a, Result<T, GatewayError>>;

/// A card processor.
pub trait PaymentGateway: Send + Sync {
    /// Charges the card and returns the gateway's charge id.
    fn charge(&self, charge: Charge) -> Call<'_, String>;

    /// Refunds the whole charge (at most once, however often asked) and returns the refund's
    /// id, or `None` when the gateway says it was refunded already.
    fn refund(&self, charge_id: String, order_id: String) -> Call<'_, Option<String>>;

    /// Every charge made for the order, as far as the gateway can tell today.
    fn charges_for(&self, order_id: String) -> Call<'_, Vec<FoundCharge>>;
}
