//! The list cache: slices of the public ticket list (a size and a cursor), kept in memory,
//! serialized, until a ticket changes.
//!
//! Why: the list is the hottest read and changes far less often than it is read; reading 100
//! documents from MongoDB and serializing them costs far more than sending stored bytes.
//! Every change to a ticket starts a new generation, and a slice is served only in the
//! generation it was read in, and for about [`MAX_AGE`]:
//! - this process's own changes move on the generation right after their commit, before the
//!   response, so a list served by the replica that made a change always shows it;
//! - other replicas' changes arrive as their events (`ticket:created`, `ticket:updated`), read
//!   as they pass on NATS, usually within milliseconds of the commit;
//! - what no event reports in time (one missed while NATS was out of reach, one still waiting
//!   in another replica's outbox, a change made straight in the database) shows within
//!   [`MAX_AGE`], twice that at worst.
//!
//! The events, not a MongoDB change stream on `tickets`: the stream's getMore after every
//! write cost mongod about a tenth of its time under sustained updates, and it also reported
//! the writes that change nothing listed (the outbox's removal of sent events, orders seen).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use axum::http::HeaderValue;
use bytes::Bytes;
use common::backoff::Backoff;
use common::events::{EventBus, Subject};
use futures::StreamExt as _;
use mongodb::bson::oid::ObjectId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Slices kept at most; a crawler walking every cursor cannot grow the cache past this.
const MAX_SLICES: usize = 64;
/// How long a slice is served: how stale a list can be after a change no event reported (up
/// to twice that for the callers that come while it is read again). One read of each slice per
/// second costs the database nothing.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(1);
/// A tap open at least this long had recovered; the delay before tapping again starts over.
const HEALTHY: Duration = Duration::from_secs(5);

/// Which slice of the list: its size and the cursor it continues after.
pub(crate) type SliceKey = (u32, Option<ObjectId>);

/// A slice of the list as sent: its JSON body and its `Link` to the next one.
#[derive(Debug, Clone)]
pub(crate) struct CachedSlice {
    pub(crate) body: Bytes,
    pub(crate) link: Option<HeaderValue>,
}

/// A slice kept.
#[derive(Debug, Clone)]
struct Kept {
    /// The generation it was read in.
    generation: u64,
    /// When its read started: its age counts from there.
    read_at: Instant,
    /// When a caller started to read it again, if one is.
    claimed_at: Option<Instant>,
    slice: CachedSlice,
}

/// What a caller that found its slice expired does.
enum Claim {
    /// Reads it again; the others are served the expired one meanwhile.
    Mine,
    /// Is served the expired slice: another caller is reading it again.
    Served,
    /// Reads it: the slice changed meanwhile, or is too old to be served at all.
    Read,
}

#[derive(Debug, Default)]
pub(crate) struct ListCache {
    generation: AtomicU64,
    slices: RwLock<HashMap<SliceKey, Kept>>,
}

impl ListCache {
    /// The slice for `key`: from memory when read in the current generation less than
    /// [`MAX_AGE`] ago (or, up to twice that, while another caller reads it again), else from
    /// `read` (and kept, when nothing changed while it was read).
    pub(crate) async fn get_or_read<E, F>(&self, key: SliceKey, read: F) -> Result<CachedSlice, E>
    where
        F: Future<Output = Result<CachedSlice, E>>,
    {
        // Read before the database, so that a change committed meanwhile marks this slice old.
        let generation = self.generation.load(Ordering::Acquire);
        let now = Instant::now();
        let kept = self.slices_read().get(&key).cloned();
        let mut expired = None;
        if let Some(kept) = kept.filter(|kept| kept.generation == generation) {
            if now.duration_since(kept.read_at) < MAX_AGE {
                return Ok(kept.slice);
            }
            // The first caller to find it expired reads it again, and the others are served it
            // meanwhile, so that they do not all read the same slice at once.
            match self.claim(key, &kept, now) {
                Claim::Served => return Ok(kept.slice),
                Claim::Mine | Claim::Read => expired = Some(kept.read_at),
            }
        }
        let slice = match read.await {
            Ok(slice) => slice,
            Err(error) => {
                if let Some(read_at) = expired {
                    self.forget(key, read_at);
                }
                return Err(error);
            }
        };
        let mut slices = self.slices_write();
        // Checked under the lock, so that a read from before a change never replaces one
        // made after it.
        if self.generation.load(Ordering::Acquire) == generation {
            if slices.len() >= MAX_SLICES && !slices.contains_key(&key) {
                slices.retain(|_, kept| kept.generation == generation);
                if slices.len() >= MAX_SLICES {
                    slices.clear();
                }
            }
            let kept = Kept {
                generation,
                read_at: now,
                claimed_at: None,
                slice: slice.clone(),
            };
            slices.insert(key, kept);
        }
        Ok(slice)
    }

    /// Whether the caller that found `seen` expired at `now` reads it again, is served it, or
    /// reads it anyway. An expired slice is served only while a read again younger than
    /// [`MAX_AGE`] is out, and never past twice [`MAX_AGE`], so that a read again that hangs
    /// or fails (MongoDB out of reach) does not keep it served.
    fn claim(&self, key: SliceKey, seen: &Kept, now: Instant) -> Claim {
        let mut slices = self.slices_write();
        let Some(kept) = slices
            .get_mut(&key)
            .filter(|kept| kept.generation == seen.generation && kept.read_at == seen.read_at)
        else {
            return Claim::Read;
        };
        let reading = kept
            .claimed_at
            .is_some_and(|claimed| now.duration_since(claimed) < MAX_AGE);
        match (reading, now.duration_since(kept.read_at) < MAX_AGE * 2) {
            (true, true) => Claim::Served,
            (true, false) => Claim::Read,
            (false, _) => {
                kept.claimed_at = Some(now);
                Claim::Mine
            }
        }
    }

    /// A read of an expired slice failed: the slice read at `read_at` is dropped, so that the
    /// next caller reads instead of being served it.
    fn forget(&self, key: SliceKey, read_at: Instant) {
        let mut slices = self.slices_write();
        if slices.get(&key).is_some_and(|kept| kept.read_at == read_at) {
            slices.remove(&key);
        }
    }

    // Every change under the lock is one map call, so a panic elsewhere leaves it whole.
    fn slices_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SliceKey, Kept>> {
        self.slices.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn slices_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SliceKey, Kept>> {
        self.slices.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every slice read so far is out of date: a ticket changed.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Starts a new generation for every ticket event on `bus` until `shutdown`, tapping the
    /// bus again whenever its tap ends.
    pub(crate) async fn follow_events(
        &self,
        bus: EventBus,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Backoff::default();
        let mut reconnected = bus.reconnections();
        loop {
            match bus
                .tap(&[Subject::TicketCreated, Subject::TicketUpdated])
                .await
            {
                Ok(mut events) => {
                    // Whatever passed while nothing was tapped.
                    self.invalidate();
                    let opened = Instant::now();
                    loop {
                        tokio::select! {
                            event = events.next() => match event {
                                Some(_) => self.invalidate(),
                                None => break,
                            },
                            // The client subscribes again by itself; what passed meanwhile
                            // was missed.
                            Ok(()) = reconnected.changed() => self.invalidate(),
                            () = shutdown.cancelled() => return Ok(()),
                        }
                    }
                    tracing::warn!("the tap on ticket events closed");
                    if opened.elapsed() >= HEALTHY {
                        backoff.reset();
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.peek().as_millis() as u64,
                        "cannot tap ticket events"
                    );
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_wait()) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn slice(body: &'static str) -> CachedSlice {
        CachedSlice {
            body: Bytes::from_static(body.as_bytes()),
            link: None,
        }
    }

    async fn get(cache: &ListCache, key: SliceKey, body: &'static str) -> CachedSlice {
        cache
            .get_or_read(key, async { Ok::<_, ()>(slice(body)) })
            .await
            .unwrap()
    }

    /// A read that ends with `outcome` once the sender is used, to hold it in flight.
    fn held(
        outcome: Result<CachedSlice, ()>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        impl Future<Output = Result<CachedSlice, ()>>,
    ) {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        (release, async move {
            held.await.unwrap();
            outcome
        })
    }

    #[tokio::test(start_paused = true)]
    async fn slices_are_kept_until_a_change_and_for_at_most_their_age() {
        let cache = ListCache::default();
        let key = (100, None);
        assert_eq!(get(&cache, key, "a").await.body, "a");
        assert_eq!(get(&cache, key, "b").await.body, "a", "kept");
        assert_eq!(get(&cache, (10, None), "c").await.body, "c", "another key");

        cache.invalidate();
        assert_eq!(get(&cache, key, "d").await.body, "d", "a change was seen");
        tokio::time::advance(MAX_AGE - Duration::from_millis(1)).await;
        assert_eq!(get(&cache, key, "e").await.body, "d", "young enough");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(get(&cache, key, "f").await.body, "f", "too old");
        assert_eq!(get(&cache, key, "g").await.body, "f");
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_slice_is_read_again_by_one_caller_while_the_others_are_served_it() {
        let cache = ListCache::default();
        let key = (100, None);
        get(&cache, key, "a").await;
        tokio::time::advance(MAX_AGE).await;
        let (release, read) = held(Ok(slice("b")));
        let again = cache.get_or_read(key, read);
        tokio::pin!(again);
        assert!(futures::poll!(again.as_mut()).is_pending(), "reading");
        assert_eq!(get(&cache, key, "c").await.body, "a", "served meanwhile");
        release.send(()).unwrap();
        assert_eq!(again.await.unwrap().body, "b");
        assert_eq!(get(&cache, key, "d").await.body, "b");

        // A read again that fails leaves nothing old behind: the next caller reads.
        tokio::time::advance(MAX_AGE).await;
        let failed = cache.get_or_read(key, async { Err::<CachedSlice, ()>(()) });
        assert!(failed.await.is_err());
        assert_eq!(get(&cache, key, "e").await.body, "e");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_again_that_outlives_max_age_does_not_keep_the_old_slice_served() {
        let cache = ListCache::default();
        let key = (100, None);
        get(&cache, key, "a").await;
        tokio::time::advance(MAX_AGE * 3 / 2).await;
        let (fail, read) = held(Err(()));
        let hanging = cache.get_or_read(key, read);
        tokio::pin!(hanging);
        assert!(futures::poll!(hanging.as_mut()).is_pending(), "reading");
        tokio::time::advance(MAX_AGE / 2).await;
        assert_eq!(
            get(&cache, key, "b").await.body,
            "b",
            "too old, even while read"
        );
        fail.send(()).unwrap();
        assert!(hanging.await.is_err());
        assert_eq!(
            get(&cache, key, "c").await.body,
            "b",
            "the newer read is kept"
        );
    }

    #[tokio::test]
    async fn a_slice_read_while_a_change_happened_is_not_kept() {
        let cache = ListCache::default();
        let read = cache
            .get_or_read((100, None), async {
                cache.invalidate();
                Ok::<_, ()>(slice("old"))
            })
            .await
            .unwrap();
        assert_eq!(read.body, "old");
        assert_eq!(get(&cache, (100, None), "new").await.body, "new");
    }

    #[tokio::test]
    async fn another_replicas_change_arrives_as_its_event() {
        let context = test_support::TestContext::new();
        let bus = context.bus().await;
        // Another connection, as another replica's outbox publishes on.
        let elsewhere = context.bus().await;
        let cache = std::sync::Arc::new(ListCache::default());
        let shutdown = CancellationToken::new();
        let follower = {
            let (cache, shutdown, bus) = (cache.clone(), shutdown.clone(), bus.clone());
            tokio::spawn(async move { cache.follow_events(bus, shutdown).await })
        };
        // The tap starts a generation once it is in place.
        test_support::eventually("the tap is in place", WAIT, || async {
            (cache.generation.load(Ordering::Acquire) > 0).then_some(())
        })
        .await;
        let generation = || cache.generation.load(Ordering::Acquire);
        let before = generation();
        let ticket = common::events::TicketData {
            id: ObjectId::new().to_hex(),
            title: "changed elsewhere".to_owned(),
            price: 1.0,
            user_id: ObjectId::new().to_hex(),
            version: 1,
            order_id: None,
        };
        elsewhere
            .publish(&common::events::TicketUpdated(ticket))
            .await
            .unwrap();
        test_support::eventually("the change is seen", WAIT, || async {
            (generation() > before).then_some(())
        })
        .await;

        shutdown.cancel();
        follower.await.unwrap().unwrap();
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let cache = ListCache::default();
        for limit in 1..=(MAX_SLICES as u32 * 3) {
            get(&cache, (limit, None), "x").await;
        }
        assert!(cache.slices.read().unwrap().len() <= MAX_SLICES);
    }
}
