//! A fake Stripe: a real HTTP server speaking the three calls payments makes
//! (`POST /v1/charges`, `POST /v1/refunds`, `GET /v1/charges/search`), with Stripe's
//! idempotency keys, metadata search and error shapes, and switches for what real processors
//! do to a saga: answer slowly, fail after charging, never answer, decline.
//!
//! Tests drive it through [`FakeStripe`]; `cargo xtask up` runs the `fake-stripe` binary, whose
//! switches are set with `POST /_fake/switches` and whose charges and refunds are listed at
//! `GET /_fake/state`.

mod routes;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use routes::router;

/// What the fake does to the next calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Switches {
    /// How long a charge's answer takes, after the charge is made.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// How many of the next charges answer 502 after the card was charged.
    pub fail_after_charge: u32,
    /// Charges are made and never answered (the client's timeout fires).
    pub hang: bool,
    /// Every call answers 503 and does nothing (Stripe having a bad day).
    pub unavailable: bool,
    /// How long a new charge stays out of search results (Stripe's are eventually
    /// consistent: "under normal conditions, less than a minute").
    #[serde(with = "millis")]
    pub search_delay: Duration,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A charge the fake made (or declined).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeCharge {
    pub id: String,
    /// `metadata[orderId]`.
    pub order_id: String,
    pub amount: i64,
    pub source: String,
    /// `succeeded`, or `failed` for a declined card.
    pub status: String,
    pub refunded: bool,
    pub created: i64,
    pub idempotency_key: Option<String>,
    /// When the fake made it (for the search delay).
    #[serde(skip, default = "std::time::Instant::now")]
    pub made: std::time::Instant,
}

impl FakeCharge {
    /// The card was charged and the money was not given back.
    pub fn standing(&self) -> bool {
        self.status == "succeeded" && !self.refunded
    }
}

/// A refund the fake made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeRefund {
    pub id: String,
    pub charge: String,
    pub order_id: Option<String>,
}

/// Everything the fake holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub switches: Switches,
    pub charges: Vec<FakeCharge>,
    pub refunds: Vec<FakeRefund>,
    /// Answers already given, by `Idempotency-Key`: a repeat gets the same answer.
    #[serde(skip)]
    replies: std::collections::HashMap<String, (u16, serde_json::Value)>,
}

/// The fake's state, shared by its routes and its owner.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<Ledger>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fake Stripe listening on loopback for one test.
#[derive(Debug, Clone)]
pub struct FakeStripe {
    /// Its base URL, for `STRIPE_API_BASE`.
    pub url: String,
    shared: Shared,
}

/// The secret key the fake expects (any `sk_test_` key is accepted).
pub const FAKE_STRIPE_KEY: &str = "sk_test_fake";

impl FakeStripe {
    /// Starts one on an ephemeral port.
    ///
    /// # Panics
    /// When it cannot listen.
    pub async fn start() -> Self {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(error) => panic!("fake stripe: bind: {error}"),
        };
        let url = match listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(error) => panic!("fake stripe: address: {error}"),
        };
        let shared = Shared::default();
        let app = router(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, shared }
    }

    /// The environment that points payments at this fake.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("STRIPE_KEY", FAKE_STRIPE_KEY.to_owned()),
            ("STRIPE_API_BASE", self.url.clone()),
        ]
    }

    /// Changes the switches for the next calls.
    pub fn set(&self, change: impl FnOnce(&mut Switches)) {
        change(&mut self.shared.lock().switches);
    }

    /// Every charge made so far, declined ones included.
    pub fn charges(&self) -> Vec<FakeCharge> {
        self.shared.lock().charges.clone()
    }

    /// The charges made for one order.
    pub fn charges_for(&self, order_id: &str) -> Vec<FakeCharge> {
        self.charges()
            .into_iter()
            .filter(|c| c.order_id == order_id)
            .collect()
    }

    /// Every refund made so far.
    pub fn refunds(&self) -> Vec<FakeRefund> {
        self.shared.lock().refunds.clone()
    }
}
