//! A pipeline's reply places: one per request in flight, in the order the
//! requests were made, filled by the driver and taken by the one task that
//! reads the pipeline. No channel per request and no wakeup per reply: the
//! driver wakes the reader only when the place it waits on (the oldest) is
//! filled, and a reader already woken is not woken again.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::task::AtomicWaker;

use crate::Result;

/// The reply places of one pipeline. Holds at most as many places as the
/// pipeline has requests in flight (its `depth`): the pipeline reserves a
/// place only when it has room for one.
#[derive(Debug, Default)]
pub(crate) struct Window {
    places: Mutex<Places>,
    /// The pipeline's reader, when it waits for the oldest place.
    reader: AtomicWaker,
}

#[derive(Debug, Default)]
struct Places {
    /// The number of `outcomes[0]`.
    first: u64,
    /// Each reserved place, `None` until answered.
    outcomes: VecDeque<Option<Result<BytesMut>>>,
}

impl Window {
    fn places(&self) -> MutexGuard<'_, Places> {
        self.places.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the next place; its number goes with the request's slot.
    pub(crate) fn reserve(&self) -> u64 {
        let mut places = self.places();
        places.outcomes.push_back(None);
        places.first + places.outcomes.len() as u64 - 1
    }

    /// Places reserved and not yet taken.
    pub(crate) fn len(&self) -> usize {
        self.places().outcomes.len()
    }

    /// Answers place `seq` (a slot answers once). Wakes the reader if this
    /// is the place it waits on.
    pub(crate) fn fill(&self, seq: u64, outcome: Result<BytesMut>) {
        let oldest = {
            let mut places = self.places();
            let Some(at) = seq.checked_sub(places.first) else {
                return;
            };
            match places.outcomes.get_mut(at as usize) {
                Some(place @ None) => *place = Some(outcome),
                _ => return,
            }
            at == 0
        };
        if oldest {
            self.reader.wake();
        }
    }

    /// The oldest place's outcome once it is answered. `Pending` (with the
    /// reader's waker kept) while it is not, or while no place is reserved.
    pub(crate) fn poll_oldest(&self, cx: &mut Context<'_>) -> Poll<Result<BytesMut>> {
        let mut places = self.places();
        if let Some(Some(_)) = places.outcomes.front() {
            places.first += 1;
            if let Some(Some(outcome)) = places.outcomes.pop_front() {
                return Poll::Ready(outcome);
            }
        }
        // Registered under the lock: a `fill` after the check above wakes it.
        self.reader.register(cx.waker());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::task::{waker, ArcWake};

    use super::*;
    use crate::Error;

    struct Count(std::sync::atomic::AtomicUsize);

    impl ArcWake for Count {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn outcomes_come_out_in_request_order_and_wake_the_reader_once_per_wait() {
        let window = Window::default();
        let count = Arc::new(Count(0.into()));
        let waker = waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (a, b, c) = (window.reserve(), window.reserve(), window.reserve());
        assert!(window.poll_oldest(&mut cx).is_pending());
        // Answered out of order (the multiplexed profile): the newer ones
        // wait for the oldest, and do not wake the reader.
        window.fill(c, Ok(BytesMut::from("c")));
        window.fill(b, Err(Error::Closed));
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(window.poll_oldest(&mut cx).is_pending());
        window.fill(a, Ok(BytesMut::from("a")));
        window.fill(a, Ok(BytesMut::from("again")));
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        let Poll::Ready(Ok(first)) = window.poll_oldest(&mut cx) else {
            panic!("the oldest is answered");
        };
        assert_eq!(&first[..], b"a");
        assert!(matches!(
            window.poll_oldest(&mut cx),
            Poll::Ready(Err(Error::Closed))
        ));
        assert!(matches!(window.poll_oldest(&mut cx), Poll::Ready(Ok(c)) if &c[..] == b"c"));
        assert_eq!(window.len(), 0);
        // A place already taken is not answered again.
        window.fill(b, Ok(BytesMut::new()));
        assert_eq!(window.len(), 0);
        assert!(window.poll_oldest(&mut cx).is_pending());
    }
}
