//! The scheduler loop: fire what is due, then sleep until the next expiration, a new schedule
//! due before it (`wake.rs`), or at most a second (to see what other replicas scheduled).

use std::time::{Duration, SystemTime};

use common::task::BackgroundTask;
use mongodb::bson::DateTime;
use tokio_util::sync::CancellationToken;

use crate::store::Schedule;

const MAX_SLEEP: Duration = Duration::from_secs(1);

pub(crate) fn task(schedule: Schedule) -> BackgroundTask {
    Box::new(move |shutdown: CancellationToken| {
        Box::pin(async move {
            loop {
                schedule.wake.passing();
                let sleep = match next_sleep(&schedule).await {
                    Ok(sleep) => sleep,
                    Err(error) => {
                        tracing::warn!(error = %error, "scheduler pass failed");
                        MAX_SLEEP
                    }
                };
                schedule
                    .wake
                    .sleeping_until(DateTime::from_system_time(SystemTime::now() + sleep));
                tokio::select! {
                    () = tokio::time::sleep(sleep) => {}
                    () = schedule.wake.woken() => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        })
    })
}

/// Fires what is due and returns how long to sleep before the next pass.
async fn next_sleep(schedule: &Schedule) -> mongodb::error::Result<Duration> {
    schedule.fire_due().await?;
    let Some(next) = schedule.next_due().await? else {
        return Ok(MAX_SLEEP);
    };
    let wait = next
        .timestamp_millis()
        .saturating_sub(DateTime::now().timestamp_millis());
    Ok(Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(MAX_SLEEP))
}
