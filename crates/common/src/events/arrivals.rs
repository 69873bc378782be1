//! Reading a replicated record that may not have arrived yet. A buyer who pays the moment
//! their order is created asks payments before the event that brings the order has been
//! applied there; a 404 then would be a lie. A record whose id
//! says it was made moments ago is waited for, briefly; anything older is answered at once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mongodb::bson::oid::ObjectId;
use tokio::sync::Notify;

/// The longest a read waits for a record, counted from the record's making (its ObjectId's
/// time) as well as from the request.
pub const ARRIVAL_WAIT: Duration = Duration::from_secs(2);
/// An id's time has whole seconds, and clocks of different machines differ a little.
const ID_TIME_SLACK: Duration = Duration::from_secs(1);
/// Another process of the service may apply the record: the reader looks again this often
/// even when no listener of its own has woken it.
const RECHECK: Duration = Duration::from_millis(50);

/// Wakes the readers waiting for records when a listener of this process has applied some.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    applied: Arc<Notify>,
}

/// What [`Arrivals::read`] found, and whether it had to wait.
#[derive(Debug)]
pub struct Arrival<T> {
    pub record: Option<T>,
    pub waited: bool,
}

impl Arrivals {
    /// Records were applied: every waiting reader reads again.
    pub fn applied(&self) {
        self.applied.notify_waiters();
    }

    /// `read` the record `id`, again after each apply (or [`RECHECK`]) while it is missing and
    /// young enough to be still on its way. `waiting` is called once, when the first read
    /// found nothing and the reader starts to wait.
    pub async fn read<T, E, Fut>(
        &self,
        id: ObjectId,
        mut read: impl FnMut() -> Fut,
        waiting: impl FnOnce(),
    ) -> Result<Arrival<T>, E>
    where
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let made = id.timestamp().to_system_time();
        let until =
            wait_for(made, SystemTime::now()).map(|wait| tokio::time::Instant::now() + wait);
        let mut waiting = Some(waiting);
        loop {
            // Registered before the read, so an apply between the read and the wait wakes it.
            let applied = self.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            if let Some(record) = read().await? {
                return Ok(Arrival {
                    record: Some(record),
                    waited: waiting.is_none(),
                });
            }
            let now = tokio::time::Instant::now();
            let Some(until) = until.filter(|until| *until > now) else {
                return Ok(Arrival {
                    record: None,
                    waited: waiting.is_none(),
                });
            };
            if let Some(start) = waiting.take() {
                start();
            }
            tokio::select! {
                () = applied => {}
                () = tokio::time::sleep_until(until.min(now + RECHECK)) => {}
            }
        }
    }
}

/// How long to wait for a record made at `made` (its id's time), asked for at `now`: none
/// when it is older than [`ARRIVAL_WAIT`] (and the slack), or made in the future beyond it.
fn wait_for(made: SystemTime, now: SystemTime) -> Option<Duration> {
    let age = match now.duration_since(made) {
        Ok(age) => age,
        Err(ahead) if ahead.duration() <= ID_TIME_SLACK => Duration::ZERO,
        Err(_) => return None,
    };
    let left = (ARRIVAL_WAIT + ID_TIME_SLACK).checked_sub(age)?;
    Some(left.min(ARRIVAL_WAIT)).filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_record_made_moments_ago_is_waited_for_and_never_longer_than_the_bound() {
        let now = SystemTime::now();
        let secs = Duration::from_secs;
        assert_eq!(wait_for(now, now), Some(ARRIVAL_WAIT));
        assert_eq!(wait_for(now - secs(2), now), Some(secs(1)));
        assert_eq!(wait_for(now - secs(3), now), None, "old: answered at once");
        assert_eq!(wait_for(now - secs(3600), now), None);
        assert_eq!(
            wait_for(now + Duration::from_millis(500), now),
            Some(ARRIVAL_WAIT),
            "a clock a little ahead"
        );
        assert_eq!(wait_for(now + secs(60), now), None, "from the future");
    }

    // Paused time: it moves only while every task waits on a timer, so a reader woken by the
    // apply itself finishes with the clock where it was.
    #[tokio::test(start_paused = true)]
    async fn a_reader_wakes_when_its_record_is_applied_and_an_old_id_does_not_wait() {
        let arrivals = Arrivals::default();
        let stored = Arc::new(std::sync::Mutex::new(None::<u32>));
        let read = {
            let stored = stored.clone();
            move || {
                let stored = stored.clone();
                async move { Ok::<_, ()>(*stored.lock().unwrap()) }
            }
        };
        let (started, mut waiting) = tokio::sync::oneshot::channel();
        let reader = {
            let arrivals = arrivals.clone();
            let read = read.clone();
            tokio::spawn(async move {
                arrivals
                    .read(ObjectId::new(), read, move || {
                        let _ = started.send(());
                    })
                    .await
            })
        };
        (&mut waiting).await.unwrap();
        let start = tokio::time::Instant::now();
        *stored.lock().unwrap() = Some(7);
        arrivals.applied();
        let arrival = reader.await.unwrap().unwrap();
        assert_eq!((arrival.record, arrival.waited), (Some(7), true));
        assert!(
            start.elapsed() < RECHECK,
            "woken by the apply, not by the recheck"
        );

        *stored.lock().unwrap() = None;
        let old = ObjectId::from_bytes([0; 12]);
        let arrival = arrivals.read(old, read, || panic!("waited")).await.unwrap();
        assert_eq!((arrival.record, arrival.waited), (None, false));
    }
}
