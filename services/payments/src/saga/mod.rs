//! The payment saga: an attempt is recorded before the card is charged, and every attempt
//! ends with the order paid (`payment:created`) or with no charge left standing (declined,
//! reconciled as failed, or refunded when the order was cancelled first). The request does
//! the common path (`pay`); the worker (`worker.rs`) finishes whatever a lost answer, a crash
//! or a cancellation left.

mod worker;

use std::sync::Arc;
use std::time::Duration;

use common::events::{OrderStatus, Wait};
use common::metrics::WorkMetrics;
use mongodb::bson::{DateTime, oid::ObjectId};
use tokio::sync::Notify;

use crate::config::SagaConfig;
use crate::gateway::{Charge, GatewayError, PaymentGateway};
use crate::store::{Attempt, AttemptState, Charged, OrderReplica, PaymentStore};

pub(crate) use worker::task;

/// Why a payment was refused or did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PayError {
    #[error("no such order")]
    NotFound,
    #[error("not the order's owner")]
    NotOwner,
    #[error("the order is cancelled")]
    Cancelled,
    #[error("the order is paid")]
    AlreadyPaid,
    #[error("the order has expired")]
    Expired,
    #[error("another attempt's outcome is not known yet")]
    InProgress,
    /// Charged, but the order was cancelled meanwhile: the charge is being refunded.
    #[error("the order was cancelled while it was paid; the charge is refunded")]
    CancelledWhilePaying,
    #[error("declined: {0}")]
    Declined(String),
    /// The gateway's answer is unknown; the worker reconciles it.
    #[error("gateway: {0}")]
    Gateway(String),
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
}

/// The work counted on `/metrics` when a payment waits for its order to arrive: `waiting` as
/// it starts, then `arrived` or `missing`; `crowded` when too many waited already.
pub(crate) const ORDER_WAIT: &str = "order_wait";

/// How long past its charge's timeout an attempt left in `charging` is taken to have died
/// with its request.
const CHARGE_LEASE_MARGIN: Duration = Duration::from_secs(10);

/// The saga's parts; cheap to clone.
#[derive(Clone)]
pub(crate) struct Saga {
    pub(crate) store: PaymentStore,
    gateway: Arc<dyn PaymentGateway>,
    config: SagaConfig,
    wake: Arc<Notify>,
    pub(crate) work: WorkMetrics,
}

/// What an attempt whose charge went through became.
enum Recorded {
    Paid,
    Refunding,
}

fn after(duration: Duration) -> DateTime {
    DateTime::from_system_time(std::time::SystemTime::now() + duration)
}

impl Saga {
    pub(crate) fn new(
        store: PaymentStore,
        gateway: Arc<dyn PaymentGateway>,
        config: SagaConfig,
    ) -> Self {
        let backlog = {
            let store = store.clone();
            WorkMetrics::default().with_backlog(Arc::new(move || {
                let store = store.clone();
                Box::pin(async move {
                    Ok(vec![
                        ("reconcile", store.unresolved().await?),
                        ("refund", store.pending_refunds().await?),
                    ])
                })
            }))
        };
        Self {
            store,
            gateway,
            config,
            wake: Arc::new(Notify::new()),
            work: backlog,
        }
    }

    /// Has the worker look for work now rather than at its next sweep.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Pays `order_id` for `user_id` with the card `token`; the payment's id.
    pub(crate) async fn pay(
        &self,
        user_id: &str,
        order_id: ObjectId,
        token: String,
    ) -> Result<ObjectId, PayError> {
        // Paid for the moment it was made, the order may not be here yet.
        let arrival = self
            .store
            .arriving_order(order_id, || self.work.count(ORDER_WAIT, "waiting"))
            .await?;
        match (arrival.wait, arrival.record.is_some()) {
            (Wait::None, _) => {}
            (Wait::Waited, true) => self.work.count(ORDER_WAIT, "arrived"),
            (Wait::Waited, false) => self.work.count(ORDER_WAIT, "missing"),
            (Wait::Crowded, _) => self.work.count(ORDER_WAIT, "crowded"),
        }
        let order = arrival.record.ok_or(PayError::NotFound)?;
        if order.user_id != user_id {
            return Err(PayError::NotOwner);
        }
        refusal(&order)?;
        let amount_cents = (order.price * 100.0).round() as i64;
        let lease = self.config.charge_timeout + CHARGE_LEASE_MARGIN;
        let Some(attempt) = self.store.claim(&order, amount_cents, lease).await? else {
            // Changed since it was read: say why, as if read now.
            let now = self
                .store
                .order(order_id)
                .await?
                .ok_or(PayError::NotFound)?;
            refusal(&now)?;
            return Err(PayError::InProgress);
        };
        // Detached: a client that hangs up, or the request's timeout, must not cut the saga
        // between the charge and its record.
        let saga = self.clone();
        tokio::spawn(async move { saga.charge(order, attempt, token).await })
            .await
            .map_err(|e| PayError::Gateway(format!("payment task: {e}")))?
    }

    async fn charge(
        &self,
        order: OrderReplica,
        attempt: Attempt,
        token: String,
    ) -> Result<ObjectId, PayError> {
        let charge = Charge {
            amount_cents: attempt.amount_cents,
            currency: "usd",
            token,
            order_id: order.id.to_hex(),
            idempotency_key: attempt.idempotency_key(order.id),
        };
        match self.gateway.charge(charge).await {
            Ok(charge_id) => {
                match self
                    .record(order.id, &attempt, &charge_id, order.uncertain)
                    .await?
                {
                    Recorded::Paid => Ok(attempt.id),
                    Recorded::Refunding => Err(PayError::CancelledWhilePaying),
                }
            }
            Err(GatewayError::Declined(reason)) => {
                self.store
                    .settle(order.id, attempt.id, AttemptState::Declined, &reason, None)
                    .await?;
                Err(PayError::Declined(reason))
            }
            Err(GatewayError::Unavailable(reason)) => {
                tracing::warn!(%reason, "charge outcome unknown: reconciling");
                self.store
                    .settle(
                        order.id,
                        attempt.id,
                        AttemptState::Unknown,
                        &reason,
                        Some(DateTime::now()),
                    )
                    .await?;
                self.wake();
                Err(PayError::Gateway(reason))
            }
        }
    }

    /// Records that `attempt`'s charge went through, whoever found out (the request or the
    /// worker): paid, or refunding when the order was cancelled first.
    async fn record(
        &self,
        order_id: ObjectId,
        attempt: &Attempt,
        charge_id: &str,
        uncertain: bool,
    ) -> Result<Recorded, PayError> {
        let audit_at = uncertain.then(|| after(self.config.search_lag));
        match self
            .store
            .charged(order_id, attempt.id, charge_id, audit_at)
            .await?
        {
            Charged::Paid => Ok(Recorded::Paid),
            Charged::Cancelled(order) => {
                self.compensate(&order).await?;
                Ok(Recorded::Refunding)
            }
            Charged::Settled(order) => {
                let settled = order.and_then(|o| o.payment).filter(|p| p.id == attempt.id);
                match settled.map(|p| p.state) {
                    Some(AttemptState::Succeeded) => Ok(Recorded::Paid),
                    Some(AttemptState::Refunding | AttemptState::Refunded) => {
                        Ok(Recorded::Refunding)
                    }
                    other => Err(PayError::Gateway(format!(
                        "charge {charge_id} found its attempt {other:?}"
                    ))),
                }
            }
        }
    }

    /// Starts the refund of a cancelled order's charge, if it has one.
    pub(crate) async fn compensate(&self, order: &OrderReplica) -> mongodb::error::Result<()> {
        if self.store.compensate(order).await? {
            self.wake();
        }
        Ok(())
    }
}

/// Why `order` cannot be paid now, if it cannot.
fn refusal(order: &OrderReplica) -> Result<(), PayError> {
    match order.status {
        OrderStatus::Cancelled => return Err(PayError::Cancelled),
        OrderStatus::Complete => return Err(PayError::AlreadyPaid),
        OrderStatus::Created | OrderStatus::AwaitingPayment => {}
    }
    match order.payment.as_ref().map(|p| p.state) {
        Some(AttemptState::Succeeded | AttemptState::Refunding | AttemptState::Refunded) => {
            return Err(PayError::AlreadyPaid);
        }
        Some(state) if state.in_flight() => return Err(PayError::InProgress),
        _ => {}
    }
    // The cancellation may not have arrived yet; the clock is enough to refuse.
    if order.expires_at <= DateTime::now() {
        return Err(PayError::Expired);
    }
    Ok(())
}
