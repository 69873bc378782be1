//! The saga's worker: reconciles attempts whose outcome is unknown, starts the refunds that
//! cancellations call for, retries refunds until the gateway confirms, and looks for a second
//! charge after an uncertain attempt. It runs on every replica; each item is leased (its next
//! look moved into the future by one guarded write) before the gateway is asked, so one
//! replica handles it at a time, and a lease that lapses (a crash) hands it to the next sweep.

use std::time::Duration;

use common::task::BackgroundTask;
use futures::StreamExt as _;
use mongodb::bson::DateTime;
use tokio_util::sync::CancellationToken;

use super::{Saga, after};
use crate::store::{AttemptState, OrderReplica, RefundJob};

/// Items of each kind one pass takes.
const BATCH: i64 = 64;
/// Items handled at once (each waits on the gateway).
const CONCURRENCY: usize = 8;
/// The longest wait between two audits of one order while the search lags.
const AUDIT_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two looks at one item, however often it failed.
const LONGEST_WAIT: Duration = Duration::from_secs(300);

/// The wait after `checks` looks: 1 s, doubling, at most [`LONGEST_WAIT`].
fn backoff(checks: i32) -> Duration {
    let exponent = u32::try_from(checks.clamp(0, 16)).unwrap_or(0);
    Duration::from_secs(1u64 << exponent).min(LONGEST_WAIT)
}

/// The worker as a background task of the service.
pub(crate) fn task(saga: Saga) -> BackgroundTask {
    common::task::background(move |shutdown: CancellationToken| async move {
        loop {
            let full = match saga.pass().await {
                Ok(full) => full,
                Err(error) => {
                    tracing::warn!(error = %error, "payment saga pass failed");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(saga.config.sweep) => {}
                () = saga.wake.notified() => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    })
}

impl Saga {
    /// One look at everything due; true when some kind filled its batch (more may wait).
    async fn pass(&self) -> mongodb::error::Result<bool> {
        let attempts = self.store.due_attempts(BATCH).await?;
        let compensations = self.store.to_compensate(BATCH).await?;
        let refunds = self.store.due_refunds(BATCH).await?;
        let audits = self.store.due_audits(BATCH).await?;
        let full = [
            attempts.len(),
            compensations.len(),
            refunds.len(),
            audits.len(),
        ]
        .iter()
        .any(|&n| n as i64 == BATCH);
        for order in &compensations {
            self.compensate(order).await?;
        }
        futures::stream::iter(attempts)
            .for_each_concurrent(CONCURRENCY, |order| self.reconcile(order))
            .await;
        futures::stream::iter(refunds)
            .for_each_concurrent(CONCURRENCY, |job| self.refund(job))
            .await;
        futures::stream::iter(audits)
            .for_each_concurrent(CONCURRENCY, |order| self.audit(order))
            .await;
        Ok(full)
    }

    /// Asks the gateway what became of an attempt whose answer was lost.
    #[tracing::instrument(skip_all, fields(order_id = %order.id))]
    async fn reconcile(&self, order: OrderReplica) {
        let outcome = match self.try_reconcile(&order).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, "reconciliation failed; retrying later");
                "error"
            }
        };
        self.work.count("reconcile", outcome);
    }

    async fn try_reconcile(&self, order: &OrderReplica) -> anyhow::Result<&'static str> {
        let Some(attempt) = &order.payment else {
            return Ok("moved");
        };
        let lease = after(backoff(attempt.checks));
        if !self.store.lease(order.id, attempt, lease).await? {
            return Ok("moved");
        }
        let mut charges: Vec<_> = self
            .gateway
            .charges_for(order.id.to_hex())
            .await?
            .into_iter()
            .filter(|c| c.succeeded && !c.refunded)
            .collect();
        charges.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        let Some((kept, extra)) = charges.split_first() else {
            let settled_by = attempt.started_at.timestamp_millis()
                + i64::try_from((self.config.charge_timeout + self.config.search_lag).as_millis())
                    .unwrap_or(i64::MAX);
            if DateTime::now().timestamp_millis() < settled_by {
                // The gateway's search may not show a fresh charge yet.
                return Ok("pending");
            }
            self.store
                .settle(
                    order.id,
                    attempt.id,
                    AttemptState::Failed,
                    "no charge found at the gateway",
                    None,
                )
                .await?;
            tracing::info!("no charge found: the order may be paid again");
            return Ok("failed");
        };
        for charge in extra {
            tracing::warn!(charge_id = %charge.id, "a second charge for one order: refunding it");
            self.store
                .add_refund(order.id, &charge.id, None, "a second charge for the order")
                .await?;
        }
        self.record(order.id, attempt, &kept.id, order.uncertain)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !extra.is_empty() {
            self.wake();
        }
        Ok("charged")
    }

    /// Refunds one charge, or leaves the job for its next look.
    #[tracing::instrument(skip_all, fields(charge_id = %job.charge_id, order_id = %job.order_id))]
    async fn refund(&self, job: RefundJob) {
        let outcome = match self.try_refund(&job).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, checks = job.checks, "refund failed; retrying later");
                "error"
            }
        };
        self.work.count("refund", outcome);
    }

    async fn try_refund(&self, job: &RefundJob) -> anyhow::Result<&'static str> {
        if !self
            .store
            .lease_refund(job, after(backoff(job.checks)))
            .await?
        {
            return Ok("moved");
        }
        let refund_id = self
            .gateway
            .refund(job.charge_id.clone(), job.order_id.to_hex())
            .await?;
        self.store.refunded(job, refund_id).await?;
        Ok("refunded")
    }

    /// After a success that followed an uncertain attempt: refunds any other charge the
    /// gateway now shows for the order.
    #[tracing::instrument(skip_all, fields(order_id = %order.id))]
    async fn audit(&self, order: OrderReplica) {
        let Some(attempt) = &order.payment else {
            return;
        };
        let outcome = match self.try_audit(&order).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, "audit failed; retrying later");
                let again = Some(after(LONGEST_WAIT));
                if let Err(error) = self.store.audited(order.id, attempt.id, again).await {
                    tracing::warn!(%error, "could not reschedule the audit");
                }
                "error"
            }
        };
        self.work.count("audit", outcome);
    }

    async fn try_audit(&self, order: &OrderReplica) -> anyhow::Result<&'static str> {
        let Some(attempt) = &order.payment else {
            return Ok("moved");
        };
        let charges = self.gateway.charges_for(order.id.to_hex()).await?;
        if !charges
            .iter()
            .any(|c| Some(&c.id) == attempt.charge_id.as_ref())
        {
            // The search has not caught up with our own charge, so not with the earlier
            // uncertain one either: look again.
            let again = after(self.config.search_lag.min(AUDIT_RETRY));
            self.store
                .audited(order.id, attempt.id, Some(again))
                .await?;
            return Ok("pending");
        }
        let extra: Vec<_> = charges
            .iter()
            .filter(|c| c.succeeded && !c.refunded && Some(&c.id) != attempt.charge_id.as_ref())
            .collect();
        for charge in &extra {
            tracing::warn!(charge_id = %charge.id, "a second charge for one order: refunding it");
            self.store
                .add_refund(order.id, &charge.id, None, "a second charge for the order")
                .await?;
        }
        self.store.audited(order.id, attempt.id, None).await?;
        if extra.is_empty() {
            return Ok("clean");
        }
        self.wake();
        Ok("second charge")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_back_off_from_a_second_to_five_minutes() {
        let waits: Vec<u64> = [0, 1, 2, 8, 9, 100, -3]
            .into_iter()
            .map(|n| backoff(n).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 256, 300, 300, 1]);
    }
}
