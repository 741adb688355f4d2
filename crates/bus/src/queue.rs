//! A queue bounded in bytes with one consumer: what a subscription reads
//! and what the cluster's publisher drains. When the next item would take
//! the queue past its limit it is dropped and counted (drop newest): a
//! slow consumer loses messages, never blocks the producer or grows memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    /// One consumer: `notify_one` keeps a permit when it is not waiting, so
    /// no wake-up is lost between its check and its wait.
    ready: Notify,
    limit: usize,
    dropped: AtomicU64,
    /// Cancelled when the consumer is dropped, so the producer (a task
    /// reading Redis) can stop.
    gone: CancellationToken,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    /// The producer ended: the consumer reads what is left, then `None`.
    closed: bool,
}

/// The producing end.
#[derive(Debug)]
pub(crate) struct Feed<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming end.
#[derive(Debug)]
pub(crate) struct Drain<T> {
    shared: Arc<Shared<T>>,
    _gone: DropGuard,
}

pub(crate) fn bounded<T>(limit: usize) -> (Feed<T>, Drain<T>) {
    let gone = CancellationToken::new();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            closed: false,
        }),
        ready: Notify::new(),
        limit,
        dropped: AtomicU64::new(0),
        gone: gone.clone(),
    });
    (
        Feed {
            shared: shared.clone(),
        },
        Drain {
            shared,
            _gone: gone.drop_guard(),
        },
    )
}

impl<T> Shared<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Feed<T> {
    /// Queues `item` of `size` bytes; `false` (and counted) if it would
    /// take the queue past its limit or the consumer is gone.
    pub(crate) fn offer(&self, item: T, size: usize) -> bool {
        if self.shared.gone.is_cancelled() {
            return false;
        }
        {
            let mut state = self.shared.state();
            if state.bytes + size > self.shared.limit {
                drop(state);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            state.bytes += size;
            state.items.push_back((item, size));
        }
        self.shared.ready.notify_one();
        true
    }

    /// How many items were dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The consumer is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.gone.is_cancelled()
    }

    /// Resolves when the consumer is gone.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn closed(&self) {
        self.shared.gone.cancelled().await;
    }
}

impl<T> Drop for Feed<T> {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.ready.notify_one();
    }
}

impl<T> Drain<T> {
    /// The next item; `None` once the producer ended and the queue is
    /// empty.
    ///
    /// # Cancel safety
    /// Cancel-safe: an item is taken only when this resolves.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some((item, size)) = state.items.pop_front() {
                    state.bytes -= size;
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// How many items were dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The bytes queued now.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.shared.state().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_the_byte_limit_is_dropped_and_counted() {
        let (feed, mut drain) = bounded::<u32>(10);
        assert!(feed.offer(1, 6));
        assert!(!feed.offer(2, 6), "6 + 6 bytes is over 10");
        assert!(feed.offer(3, 4));
        assert_eq!(drain.dropped(), 1);
        assert_eq!(drain.queued_bytes(), 10);
        assert_eq!(drain.recv().await, Some(1));
        assert_eq!(drain.recv().await, Some(3));
        assert_eq!(drain.queued_bytes(), 0);
        drop(feed);
        assert_eq!(drain.recv().await, None);
    }

    #[tokio::test]
    async fn the_producer_sees_the_consumer_go() {
        let (feed, drain) = bounded::<u32>(10);
        assert!(!feed.is_closed());
        drop(drain);
        feed.closed().await;
        assert!(!feed.offer(1, 1));
    }
}
