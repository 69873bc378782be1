//! A listener's lanes: its messages spread by record id, so that one record's events are
//! applied one after the other in stream order and different records' side by side; a lane
//! offers what waits in it to the handler as one batch.

use std::hash::BuildHasher as _;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{BACKLOG, FILL_GAP, FILL_MAX, Handler, LANE_DEPTH, Listener, MAX_BATCH, Parsed};
use crate::events::catalog::Event;

/// The lanes of one running listener.
pub(super) struct Lanes<E> {
    senders: Vec<mpsc::Sender<Parsed<E>>>,
    workers: JoinSet<()>,
    hasher: std::hash::RandomState,
}

impl<E: Event> Lanes<E> {
    /// Starts [`Handler::LANES`] lanes working for `listener`.
    pub(super) fn spawn<H: Handler<E>>(listener: &Arc<Listener<E, H>>) -> Self {
        let count = H::LANES.max(1);
        let mut senders = Vec::with_capacity(count);
        let mut workers = JoinSet::new();
        for _ in 0..count {
            let (sender, queue) = mpsc::channel::<Parsed<E>>(LANE_DEPTH);
            workers.spawn(work(Arc::clone(listener), queue));
            senders.push(sender);
        }
        Self {
            senders,
            workers,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Hands a message to the lane of its record; waits while that lane is full, which holds
    /// up the pull. `Err` when the lane has stopped.
    pub(super) async fn route(
        &self,
        message: async_nats::jetstream::Message,
        event: E,
    ) -> Result<(), ()> {
        let lane = self.hasher.hash_one(event.record_id()) as usize % self.senders.len();
        self.senders[lane]
            .send((message, event))
            .await
            .map_err(|_| ())
    }

    /// Lets every lane finish what it was handed (acked or retried, never dropped).
    pub(super) async fn finish(self) {
        let Self {
            senders,
            mut workers,
            ..
        } = self;
        drop(senders);
        while workers.join_next().await.is_some() {}
    }
}

/// One lane: takes what waits in it as a batch, offers the batch to the handler at once, and
/// else handles its messages one by one.
async fn work<E: Event, H: Handler<E>>(
    listener: Arc<Listener<E, H>>,
    mut queue: mpsc::Receiver<Parsed<E>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        // Whatever else already waits in the lane goes along: under a backlog a handler that
        // can apply events at once saves a round trip per event.
        batch.push(first);
        fill(&mut queue, &mut batch, in_backlog).await;
        if batch.len() > 1 && listener.all_at_once(&batch).await {
            batch.clear();
            continue;
        }
        for (message, event) in batch.drain(..) {
            listener.process(message, event).await;
        }
    }
}

/// Adds what already waits in the lane to `batch`. Under a backlog (the server still holds
/// [`BACKLOG`] or more messages for the consumer) it also waits for more, briefly: the sooner a
/// lane writes, the fewer versions of one record its batch holds, and every version that does
/// not coalesce is one more MongoDB write.
pub(super) async fn fill<T>(
    queue: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    in_backlog: impl Fn(&T) -> bool,
) {
    let until = tokio::time::Instant::now() + FILL_MAX;
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) if batch.last().is_some_and(&in_backlog) => {
                let gap = (tokio::time::Instant::now() + FILL_GAP).min(until);
                match tokio::time::timeout_at(gap, queue.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            Err(_) => break,
        }
    }
}

/// Whether the server still held a backlog for the consumer when it delivered `message`.
fn in_backlog<E>((message, _): &Parsed<E>) -> bool {
    message.info().is_ok_and(|info| info.pending >= BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `(item, the server held a backlog when it was delivered)`.
    type Item = (u32, bool);

    fn lane() -> (mpsc::Sender<Item>, mpsc::Receiver<Item>) {
        mpsc::channel(MAX_BATCH * 2)
    }

    /// The next batch as a lane takes it, and how long filling it took.
    async fn next_batch(queue: &mut mpsc::Receiver<Item>) -> (Vec<Item>, Duration) {
        let mut batch = vec![queue.recv().await.unwrap()];
        let started = tokio::time::Instant::now();
        fill(queue, &mut batch, |(_, backlog)| *backlog).await;
        (batch, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn live_traffic_is_written_at_once_with_whatever_already_waits() {
        let (sender, mut queue) = lane();
        sender.send((1, false)).await.unwrap();
        sender.send((2, false)).await.unwrap();
        let later = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            later.send((3, false)).await.unwrap();
        });
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!(batch, [(1, false), (2, false)]);
        assert_eq!(took, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_backlog_a_batch_waits_for_more_until_a_gap_or_the_limit() {
        // Messages keep coming every 7 ms (less than the gap): the batch grows until the
        // overall limit.
        let (sender, mut queue) = lane();
        let steady = sender.clone();
        tokio::spawn(async move {
            for n in 0.. {
                if steady.send((n, true)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
        });
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!(took, FILL_MAX);
        assert_eq!(batch.len(), 36, "the first, then one every 7 ms for 250 ms");
        drop(queue);

        // A pause longer than the gap ends the batch.
        let (sender, mut queue) = lane();
        sender.send((1, true)).await.unwrap();
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!((batch.len(), took), (1, FILL_GAP));

        // The end of the backlog (the last message says so) ends it at once.
        sender.send((2, true)).await.unwrap();
        sender.send((3, false)).await.unwrap();
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!(batch, [(2, true), (3, false)]);
        assert_eq!(took, Duration::ZERO);

        // A full batch is written without waiting.
        for n in 0..MAX_BATCH as u32 + 5 {
            sender.send((n, true)).await.unwrap();
        }
        let (batch, took) = next_batch(&mut queue).await;
        assert_eq!((batch.len(), took), (MAX_BATCH, Duration::ZERO));
    }
}
