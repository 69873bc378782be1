//! The list cache: slices of the public ticket list (a size and a cursor), kept in memory,
//! serialized, until a ticket changes.
//!
//! Why: the list is the hottest read and changes far less often than it is read; reading 100
//! documents from MongoDB and serializing them costs far more than sending stored bytes.
//! Every change to the `tickets` collection starts a new generation, and a slice is served
//! only in the generation it was read in:
//! - this process's own changes move on the generation right after their commit, before the
//!   response, so a list served by the replica that made a change always shows it;
//! - other replicas' changes (and anything else writing to the collection) arrive on a MongoDB
//!   change stream, usually within milliseconds: a client whose next list lands on another
//!   replica may see the slice from before its change for that long;
//! - while that change stream is not open (starting, MongoDB unreachable, or no answer from
//!   it for [`STALL`]), nothing is served from memory, so a missed change can never leave a
//!   stale slice behind.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use bytes::Bytes;
use common::backoff::Backoff;
use mongodb::Collection;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ChangeStreamEvent;
use tokio_util::sync::CancellationToken;

/// Slices kept at most; a crawler walking every cursor cannot grow the cache past this.
const MAX_SLICES: usize = 64;
/// The change stream answers at least every second (its getMore's await time) even when
/// nothing changes; this long without an answer means it is stuck, and is treated as closed.
const STALL: Duration = Duration::from_secs(10);
/// A change stream open at least this long had recovered; the reopening delay starts over.
const HEALTHY: Duration = Duration::from_secs(5);

/// Which slice of the list: its size and the cursor it continues after.
pub(crate) type SliceKey = (u32, Option<ObjectId>);

/// A slice of the list as sent: its JSON body and its `Link` to the next one.
#[derive(Debug, Clone)]
pub(crate) struct CachedSlice {
    pub(crate) body: Bytes,
    pub(crate) link: Option<HeaderValue>,
}

#[derive(Debug, Default)]
pub(crate) struct ListCache {
    /// The generation (upper bits) and whether changes are followed (lowest bit), in one
    /// word so that a reader sees both from the same moment.
    state: AtomicU64,
    slices: RwLock<HashMap<SliceKey, (u64, CachedSlice)>>,
}

const WATCHING: u64 = 1;
const GENERATION: u64 = 2;

impl ListCache {
    /// The slice for `key`: from memory when read in the current generation, else from `read`
    /// (and kept, when nothing changed while it was read).
    pub(crate) async fn get_or_read<E, F>(&self, key: SliceKey, read: F) -> Result<CachedSlice, E>
    where
        F: Future<Output = Result<CachedSlice, E>>,
    {
        // Read before the database, so that a change committed meanwhile marks this slice old.
        let state = self.state.load(Ordering::Acquire);
        let watching = state & WATCHING != 0;
        if watching
            && let Some((at, slice)) = self.slices.read().ok().and_then(|s| s.get(&key).cloned())
            && at == state
        {
            return Ok(slice);
        }
        let slice = read.await?;
        if watching && let Ok(mut slices) = self.slices.write() {
            // Checked under the lock that `follow` clears the slices under.
            if self.state.load(Ordering::Acquire) == state {
                if slices.len() >= MAX_SLICES && !slices.contains_key(&key) {
                    slices.retain(|_, (at, _)| *at == state);
                    if slices.len() >= MAX_SLICES {
                        slices.clear();
                    }
                }
                slices.insert(key, (state, slice.clone()));
            }
        }
        Ok(slice)
    }

    /// Every slice read so far is out of date: a ticket changed.
    pub(crate) fn invalidate(&self) {
        self.state.fetch_add(GENERATION, Ordering::AcqRel);
    }

    /// Starts or stops serving from memory; either way a new generation.
    fn follow(&self, watching: bool) {
        let mut slices = self
            .slices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                Some(((state & !WATCHING) + GENERATION) | u64::from(watching))
            });
        slices.clear();
    }

    /// Follows the change stream of `tickets` until `shutdown`, reopening it after errors;
    /// slices are served from memory only while it is open and answering.
    pub(crate) async fn follow_changes(
        &self,
        tickets: Collection<Document>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Backoff::default();
        loop {
            match open_changes(&tickets).await {
                Ok(mut changes) => {
                    self.follow(true);
                    let opened = Instant::now();
                    let ended = self.follow_stream(&mut changes, &shutdown).await;
                    self.follow(false);
                    if matches!(ended, Ended::Shutdown) {
                        return Ok(());
                    }
                    if opened.elapsed() >= HEALTHY {
                        backoff.reset();
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = backoff.peek().as_millis() as u64, "cannot open the ticket change stream");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_wait()) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Starts a new generation for each change on `changes`, until it fails, closes, goes
    /// [`STALL`] without an answer, or `shutdown`.
    async fn follow_stream(
        &self,
        changes: &mut impl Changes,
        shutdown: &CancellationToken,
    ) -> Ended {
        loop {
            tokio::select! {
                answer = tokio::time::timeout(STALL, changes.answer()) => match answer {
                    Ok(Ok(Answer::Change)) => self.invalidate(),
                    Ok(Ok(Answer::Nothing)) => {}
                    Ok(Ok(Answer::Closed)) => return Ended::Lost,
                    Ok(Err(error)) => {
                        tracing::warn!(error = %error, "ticket change stream failed");
                        return Ended::Lost;
                    }
                    Err(_) => {
                        tracing::warn!(stall_s = STALL.as_secs(), "ticket change stream stopped answering");
                        return Ended::Lost;
                    }
                },
                () = shutdown.cancelled() => return Ended::Shutdown,
            }
        }
    }
}

/// Why following a change stream ended.
enum Ended {
    /// It failed, closed or stalled: open another.
    Lost,
    Shutdown,
}

/// One answer of a change stream's getMore.
enum Answer {
    Change,
    /// Nothing changed during the getMore's await time.
    Nothing,
    Closed,
}

/// Every change to `tickets` from now on, whoever makes it (only the kind of change is read:
/// the cache only needs to know that something changed).
async fn open_changes(
    tickets: &Collection<Document>,
) -> mongodb::error::Result<ChangeStream<ChangeStreamEvent<Document>>> {
    tickets
        .watch()
        .pipeline([doc! { "$project": { "operationType": 1 } }])
        .await
}

/// A change stream, as far as the list cache cares.
trait Changes {
    async fn answer(&mut self) -> mongodb::error::Result<Answer>;
}

impl Changes for ChangeStream<ChangeStreamEvent<Document>> {
    async fn answer(&mut self) -> mongodb::error::Result<Answer> {
        // One answer per getMore, changes or not, so a silent stream shows.
        Ok(match self.next_if_any().await? {
            Some(_) => Answer::Change,
            None if self.is_alive() => Answer::Nothing,
            None => Answer::Closed,
        })
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

    #[tokio::test]
    async fn slices_are_kept_only_while_changes_are_followed_and_none_happened() {
        let cache = ListCache::default();
        let key = (100, None);
        // Not following changes: always read.
        assert_eq!(get(&cache, key, "a").await.body, "a");
        assert_eq!(get(&cache, key, "b").await.body, "b");

        cache.follow(true);
        assert_eq!(get(&cache, key, "c").await.body, "c");
        assert_eq!(get(&cache, key, "d").await.body, "c", "kept");
        assert_eq!(get(&cache, (10, None), "e").await.body, "e", "another key");

        cache.invalidate();
        assert_eq!(get(&cache, key, "f").await.body, "f", "a change was seen");
        assert_eq!(get(&cache, key, "g").await.body, "f");

        cache.follow(false);
        assert_eq!(
            get(&cache, key, "h").await.body,
            "h",
            "changes may be missed"
        );
    }

    #[tokio::test]
    async fn a_slice_read_while_a_change_happened_is_not_kept() {
        let cache = ListCache::default();
        cache.follow(true);
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
    async fn another_writers_change_arrives_on_the_change_stream() {
        let context = test_support::TestContext::new();
        let db = context.database("tickets").await;
        let cache = std::sync::Arc::new(ListCache::default());
        let shutdown = CancellationToken::new();
        let follower = {
            let (cache, shutdown) = (cache.clone(), shutdown.clone());
            let tickets = db.collection::<Document>("tickets");
            tokio::spawn(async move { cache.follow_changes(tickets, shutdown).await })
        };
        test_support::eventually("the change stream is open", WAIT, || async {
            (cache.state.load(Ordering::Acquire) & WATCHING != 0).then_some(())
        })
        .await;
        let before = cache.state.load(Ordering::Acquire);
        db.collection::<mongodb::bson::Document>("tickets")
            .insert_one(mongodb::bson::doc! { "title": "written elsewhere" })
            .await
            .unwrap();
        test_support::eventually("the change is seen", WAIT, || async {
            (cache.state.load(Ordering::Acquire) > before).then_some(())
        })
        .await;
        shutdown.cancel();
        follower.await.unwrap().unwrap();
        assert_eq!(cache.state.load(Ordering::Acquire) & WATCHING, 0);
    }

    /// A change stream that answers "nothing changed" `answers` times, once a second, then
    /// goes silent.
    struct Quiet {
        answers: u32,
    }

    impl Changes for Quiet {
        async fn answer(&mut self) -> mongodb::error::Result<Answer> {
            if self.answers == 0 {
                std::future::pending::<()>().await;
            }
            self.answers -= 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Answer::Nothing)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_stream_silent_for_the_stall_time_is_given_up_and_a_quiet_one_is_not() {
        let cache = ListCache::default();
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        // Twenty quiet seconds, answered every second, are not a stall; the silence after is.
        // Bounded, so that a stall never detected fails instead of hanging.
        let ended = tokio::time::timeout(
            Duration::from_secs(3600),
            cache.follow_stream(&mut Quiet { answers: 20 }, &shutdown),
        )
        .await
        .expect("the stall is detected");
        assert!(matches!(ended, Ended::Lost));
        assert_eq!(started.elapsed(), Duration::from_secs(20) + STALL);

        shutdown.cancel();
        let ended = cache
            .follow_stream(&mut Quiet { answers: 0 }, &shutdown)
            .await;
        assert!(matches!(ended, Ended::Shutdown));
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let cache = ListCache::default();
        cache.follow(true);
        for limit in 1..=(MAX_SLICES as u32 * 3) {
            get(&cache, (limit, None), "x").await;
        }
        assert!(cache.slices.read().unwrap().len() <= MAX_SLICES);
    }
}
