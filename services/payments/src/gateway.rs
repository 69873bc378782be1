//! Card payments: the gateway trait, the Stripe adapter, and the local test gateway.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

/// One charge to make.
#[derive(Debug, Clone)]
pub struct Charge {
    /// Amount in the currency's smallest unit (cents).
    pub amount_cents: i64,
    /// ISO currency code, lower-case.
    pub currency: &'static str,
    /// The card token from the client (e.g. Stripe's `tok_visa`).
    pub token: String,
    /// Same key for every attempt to pay one order, so a retry never charges twice.
    pub idempotency_key: String,
}

/// Why a charge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The card was refused; the reason is the gateway's, fit to show the buyer.
    #[error("{0}")]
    Declined(String),
    /// The gateway could not be reached or failed; the charge may be retried.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
}

/// A card processor.
pub trait PaymentGateway: Send + Sync {
    /// Charges the card and returns the gateway's charge id.
    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<String, GatewayError>>;
}

/// The local test gateway: Stripe's test tokens without Stripe. `tok_visa` (and any other
/// token) succeeds; `tok_chargeDeclined` is declined.
#[derive(Debug, Default)]
pub struct LocalGateway;

impl PaymentGateway for LocalGateway {
    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<String, GatewayError>> {
        Box::pin(async move {
            match charge.token.as_str() {
                "tok_chargeDeclined" => {
                    Err(GatewayError::Declined("Your card was declined.".to_owned()))
                }
                // Deterministic per order, like Stripe's answer to a repeated idempotency key.
                _ => Ok(format!("ch_local_{}", charge.idempotency_key)),
            }
        })
    }
}

/// Stripe's Charges API.
pub struct StripeGateway {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct StripeCharge {
    id: String,
}

#[derive(Deserialize)]
struct StripeErrorBody {
    error: StripeError,
}

#[derive(Deserialize)]
struct StripeError {
    message: Option<String>,
}

impl StripeGateway {
    /// A client for `base` (normally `https://api.stripe.com`) with the secret key.
    pub fn new(base: &str, key: &str) -> anyhow::Result<Self> {
        common::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }
}

impl PaymentGateway for StripeGateway {
    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<String, GatewayError>> {
        Box::pin(async move {
            let form = [
                ("amount", charge.amount_cents.to_string()),
                ("currency", charge.currency.to_owned()),
                ("source", charge.token.clone()),
            ];
            let response = self
                .http
                .post(format!("{}/v1/charges", self.base))
                .bearer_auth(&self.key)
                .header("Idempotency-Key", &charge.idempotency_key)
                .form(&form)
                .send()
                .await
                .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            if status.is_success() {
                let charge: StripeCharge = serde_json::from_slice(&bytes)
                    .map_err(|e| GatewayError::Unavailable(format!("unexpected answer: {e}")))?;
                return Ok(charge.id);
            }
            let message = serde_json::from_slice::<StripeErrorBody>(&bytes)
                .ok()
                .and_then(|body| body.error.message);
            // 402 is a card error, 400 a token or card that cannot be used: the buyer's to
            // fix. 401, 403 and 429 are ours (a wrong key, a rate limit), never a decline.
            if status == reqwest::StatusCode::PAYMENT_REQUIRED
                || status == reqwest::StatusCode::BAD_REQUEST
            {
                Err(GatewayError::Declined(
                    message.unwrap_or_else(|| "The card was refused.".to_owned()),
                ))
            } else {
                Err(GatewayError::Unavailable(format!(
                    "{status}: {}",
                    message.unwrap_or_default()
                )))
            }
        })
    }
}
