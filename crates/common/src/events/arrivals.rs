//! Reading a replicated record that may not have arrived yet. A buyer who pays the moment
//! their order is created asks payments before the event that brings the order has been
//! applied there; a 404 then would be a lie. A record whose id
//! says it was made moments ago is waited for, briefly; anything older is answered at once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mongodb::bson::oid::ObjectId;
use tokio::sync::{Notify, Semaphore};

/// The longest a read waits for a record, counted from the record's making (its ObjectId's
/// time) as well as from the request.
pub const ARRIVAL_WAIT: Duration = Duration::from_secs(2);
/// An id's time has whole seconds, and clocks of different machines differ a little.
const ID_TIME_SLACK: Duration = Duration::from_secs(1);
/// Another process of the service may apply the record: the reader looks again this often
/// even when no listener of its own has woken it.
const RECHECK: Duration = Duration::from_millis(50);
/// Readers waiting at once, per process. Anyone can make a fresh id, so without a bound a few
/// clients asking for ids that never arrive would hold the service's request slots; beyond it
/// a missing record is answered at once, as if old.
pub const MOST_WAITING: usize = 16;

/// Wakes the readers waiting for records when a listener of this process has applied some.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Arrivals {
    applied: Arc<Notify>,
    waiting: Arc<Semaphore>,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self {
            applied: Arc::default(),
            waiting: Arc::new(Semaphore::new(MOST_WAITING)),
        }
    }
}

/// What [`Arrivals::read`] found, and whether it waited.
#[derive(Debug)]
pub struct Arrival<T> {
    pub record: Option<T>,
    pub wait: Wait,
}

/// Whether a read waited for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Found at once, or too old to wait for.
    None,
    Waited,
    /// Missing and young, but [`MOST_WAITING`] readers already waited.
    Crowded,
}

impl Arrivals {
    /// Records were applied: every waiting reader reads again.
    pub fn applied(&self) {
        self.applied.notify_waiters();
    }

    /// `read` the record `id`, again after each apply (or [`RECHECK`]) while it is missing and
    /// young enough to be still on its way, unless [`MOST_WAITING`] readers already wait.
    /// `waiting` is called once, when the reader starts to wait.
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
        let mut permit = None;
        loop {
            // Registered before the read, so an apply between the read and the wait wakes it.
            let applied = self.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            let record = read().await?;
            let now = tokio::time::Instant::now();
            let wait = if permit.is_some() {
                Wait::Waited
            } else {
                Wait::None
            };
            let until = match (record.is_some(), until.filter(|until| *until > now)) {
                (false, Some(until)) => until,
                _ => return Ok(Arrival { record, wait }),
            };
            if permit.is_none() {
                let Ok(held) = self.waiting.clone().try_acquire_owned() else {
                    return Ok(Arrival {
                        record,
                        wait: Wait::Crowded,
                    });
                };
                permit = Some(held);
                if let Some(start) = waiting.take() {
                    start();
                }
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
        assert_eq!((arrival.record, arrival.wait), (Some(7), Wait::Waited));
        assert!(
            start.elapsed() < RECHECK,
            "woken by the apply, not by the recheck"
        );

        *stored.lock().unwrap() = None;
        let old = ObjectId::from_bytes([0; 12]);
        let arrival = arrivals.read(old, read, || panic!("waited")).await.unwrap();
        assert_eq!((arrival.record, arrival.wait), (None, Wait::None));
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_most_waiting_a_missing_record_is_answered_at_once() {
        let arrivals = Arrivals::default();
        let never = || async { Ok::<Option<u32>, ()>(None) };
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..MOST_WAITING {
            let (started, waiting) = tokio::sync::oneshot::channel();
            let arrivals = arrivals.clone();
            readers.spawn(async move {
                arrivals
                    .read(ObjectId::new(), never, move || {
                        let _ = started.send(());
                    })
                    .await
            });
            waiting.await.unwrap();
        }
        let start = tokio::time::Instant::now();
        let crowded = arrivals
            .read(ObjectId::new(), never, || panic!("waited"))
            .await
            .unwrap();
        assert_eq!((crowded.record, crowded.wait), (None, Wait::Crowded));
        assert_eq!(start.elapsed(), Duration::ZERO);
        while let Some(waited) = readers.join_next().await {
            let waited = waited.unwrap().unwrap();
            assert_eq!((waited.record, waited.wait), (None, Wait::Waited));
        }
        let again = arrivals.read(ObjectId::new(), never, || {}).await.unwrap();
        assert_eq!(
            again.wait,
            Wait::Waited,
            "the waits that ended gave their turn back"
        );
    }
}
