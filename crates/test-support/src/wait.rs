//! Bounded waiting: a condition polled until it holds, failing the test with what it waited
//! for when it does not hold in time.

use std::time::Duration;

/// How long tests wait for an asynchronous effect (an event applied, a replica caught up)
/// unless they say otherwise: far beyond the usual milliseconds, so that only a real failure,
/// not a busy machine, reaches it.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` every 10 ms until it returns `Some`, failing with `what` after `timeout`, even
/// when one check is still running then.
///
/// # Panics
/// When the condition is not met in time.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(_) => panic!("timed out after {timeout:?} waiting for {what} (a check hung)"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
