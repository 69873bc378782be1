//! Stripe's API, and only the calls the saga needs: `POST /v1/charges`, `POST /v1/refunds` and
//! `GET /v1/charges/search`. Any server speaking them (the fake in `test-support`) stands in
//! through `STRIPE_API_BASE`.
//!
//! No call is retried here: a charge whose answer is lost is reconciled by the saga's worker,
//! which also retries refunds and searches with backoff.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::{Call, Charge, FoundCharge, GatewayError, PaymentGateway};

/// Where Stripe is and how long to wait for it.
#[derive(Clone)]
pub struct StripeConfig {
    /// `STRIPE_API_BASE`, normally `https://api.stripe.com`.
    pub base: String,
    /// `STRIPE_KEY`, the secret key.
    pub key: String,
    /// `STRIPE_TIMEOUT_SECONDS`: the longest one call may take, answer included.
    pub timeout: Duration,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base", &self.base)
            .field("key", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Stripe's Charges, Refunds and Search APIs.
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
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct SearchPage {
    data: Vec<SearchedCharge>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct SearchedCharge {
    id: String,
    status: String,
    #[serde(default)]
    refunded: bool,
    #[serde(default)]
    created: i64,
}

#[derive(Deserialize)]
struct StripeErrorBody {
    error: StripeError,
}

#[derive(Deserialize)]
struct StripeError {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
}

/// A refused call: its status and Stripe's error, if it sent one.
struct Refusal {
    status: StatusCode,
    error: Option<StripeError>,
}

impl Refusal {
    fn unavailable(&self) -> GatewayError {
        let message = self.error.as_ref().and_then(|e| e.message.as_deref());
        GatewayError::Unavailable(format!("{}: {}", self.status, message.unwrap_or("")))
    }
}

/// Most pages of search results read for one order (100 charges each).
const SEARCH_PAGES: usize = 10;

impl StripeGateway {
    /// A client for the configured Stripe.
    pub fn new(config: &StripeConfig) -> anyhow::Result<Self> {
        common::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Self {
            http,
            base: config.base.trim_end_matches('/').to_owned(),
            key: config.key.clone(),
        })
    }

    /// Sends `request` with the key; the body of a 2xx answer, or why there was none.
    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Result<T, Refusal>, GatewayError> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Ok)
                .map_err(|e| GatewayError::Unavailable(format!("unexpected answer: {e}")));
        }
        let error = serde_json::from_slice::<StripeErrorBody>(&bytes)
            .ok()
            .map(|body| body.error);
        Ok(Err(Refusal { status, error }))
    }
}

impl PaymentGateway for StripeGateway {
    fn charge(&self, charge: Charge) -> Call<'_, String> {
        Box::pin(async move {
            let form = [
                ("amount", charge.amount_cents.to_string()),
                ("currency", charge.currency.to_owned()),
                ("source", charge.token.clone()),
                ("metadata[orderId]", charge.order_id.clone()),
            ];
            let request = self
                .http
                .post(format!("{}/v1/charges", self.base))
                .header("Idempotency-Key", &charge.idempotency_key)
                .form(&form);
            let refusal = match self.send::<Created>(request).await? {
                Ok(created) => return Ok(created.id),
                Err(refusal) => refusal,
            };
            // 402 is a card error and 400 a token or card that cannot be used: nothing was
            // charged and the buyer can fix it. A reused key (`idempotency_error`), 401, 403,
            // 409, 429 and 5xx are ours or Stripe's: never a decline.
            let declined = matches!(
                refusal.status,
                StatusCode::PAYMENT_REQUIRED | StatusCode::BAD_REQUEST
            ) && refusal.error.as_ref().and_then(|e| e.kind.as_deref())
                != Some("idempotency_error");
            if declined {
                let message = refusal.error.and_then(|e| e.message);
                return Err(GatewayError::Declined(
                    message.unwrap_or_else(|| "The card was refused.".to_owned()),
                ));
            }
            Err(refusal.unavailable())
        })
    }

    fn refund(&self, charge_id: String, order_id: String) -> Call<'_, Option<String>> {
        Box::pin(async move {
            let form = [("charge", &charge_id), ("metadata[orderId]", &order_id)];
            let request = self
                .http
                .post(format!("{}/v1/refunds", self.base))
                // One refund per charge, however often the worker asks.
                .header("Idempotency-Key", format!("refund-{charge_id}"))
                .form(&form);
            match self.send::<Created>(request).await? {
                Ok(created) => Ok(Some(created.id)),
                Err(refusal)
                    if refusal.error.as_ref().and_then(|e| e.code.as_deref())
                        == Some("charge_already_refunded") =>
                {
                    Ok(None)
                }
                Err(refusal) => Err(refusal.unavailable()),
            }
        })
    }

    fn charges_for(&self, order_id: String) -> Call<'_, Vec<FoundCharge>> {
        Box::pin(async move {
            let query = format!("metadata['orderId']:'{order_id}'");
            let mut found = Vec::new();
            let mut page: Option<String> = None;
            for _ in 0..SEARCH_PAGES {
                let mut params = vec![("query", query.as_str()), ("limit", "100")];
                if let Some(page) = &page {
                    params.push(("page", page));
                }
                let request = self
                    .http
                    .get(format!("{}/v1/charges/search", self.base))
                    .query(&params);
                let results = self
                    .send::<SearchPage>(request)
                    .await?
                    .map_err(|refusal| refusal.unavailable())?;
                found.extend(results.data.into_iter().map(|c| FoundCharge {
                    succeeded: c.status == "succeeded",
                    id: c.id,
                    refunded: c.refunded,
                    created: c.created,
                }));
                match results.next_page {
                    Some(next) if results.has_more => page = Some(next),
                    _ => break,
                }
            }
            Ok(found)
        })
    }
}
