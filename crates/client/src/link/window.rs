//! A pipeline's reply places: one per request in flight, in the order the
//! requests were made, filled by the driver and taken by the one task that
//! reads the pipeline. No channel per request and no wakeup per reply: the
//! driver wakes the reader only when the place it waits on (the oldest) is
//! filled, and a reader already woken is not woken again.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Context;

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

    /// Reserves `n` more places and returns the number of the first; each
    /// number goes with its request's slot.
    pub(crate) fn reserve(&self, n: usize) -> u64 {
        let mut places = self.places();
        let first = places.first + places.outcomes.len() as u64;
        places
            .outcomes
            .extend(std::iter::repeat_with(|| None).take(n));
        first
    }

    /// Gives back the `n` newest places, reserved and never used.
    pub(crate) fn unreserve(&self, n: usize) {
        let mut places = self.places();
        let keep = places.outcomes.len().saturating_sub(n);
        places.outcomes.truncate(keep);
    }

    /// Places reserved and not yet taken.
    #[cfg(test)]
    fn len(&self) -> usize {
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

    /// Moves the outcomes of the oldest places, as far as they are all
    /// answered, to the end of `into`, and returns how many. None yet: the
    /// reader's waker is kept, and the fill of the oldest place wakes it.
    pub(crate) fn take_answered(
        &self,
        into: &mut VecDeque<Result<BytesMut>>,
        cx: &mut Context<'_>,
    ) -> usize {
        let mut places = self.places();
        let mut taken = 0;
        while let Some(Some(_)) = places.outcomes.front() {
            if let Some(Some(outcome)) = places.outcomes.pop_front() {
                into.push_back(outcome);
            }
            taken += 1;
        }
        places.first += taken as u64;
        if taken == 0 {
            // Registered under the lock: a `fill` after the check above wakes it.
            self.reader.register(cx.waker());
        }
        taken
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
        let wakes = || count.0.load(std::sync::atomic::Ordering::SeqCst);
        let mut taken = VecDeque::new();
        let a = window.reserve(3);
        let (b, c) = (a + 1, a + 2);
        assert_eq!(window.take_answered(&mut taken, &mut cx), 0);
        // Answered out of order (the multiplexed profile): the newer ones
        // wait for the oldest, and do not wake the reader.
        window.fill(c, Ok(BytesMut::from("c")));
        window.fill(b, Err(Error::Closed));
        assert_eq!(wakes(), 0);
        assert_eq!(window.take_answered(&mut taken, &mut cx), 0);
        window.fill(a, Ok(BytesMut::from("a")));
        window.fill(a, Ok(BytesMut::from("again")));
        assert_eq!(wakes(), 1, "one wakeup for the oldest, none for a repeat");
        assert_eq!(window.take_answered(&mut taken, &mut cx), 3);
        assert!(matches!(taken.pop_front(), Some(Ok(x)) if &x[..] == b"a"));
        assert!(matches!(taken.pop_front(), Some(Err(Error::Closed))));
        assert!(matches!(taken.pop_front(), Some(Ok(x)) if &x[..] == b"c"));
        assert_eq!(window.len(), 0);
        // A place already taken is not answered again; numbers go on.
        window.fill(b, Ok(BytesMut::new()));
        assert_eq!(window.len(), 0);
        assert_eq!(window.reserve(1), c + 1);
        assert_eq!(window.take_answered(&mut taken, &mut cx), 0);
        window.fill(c + 1, Ok(BytesMut::from("d")));
        assert_eq!(wakes(), 2);
        assert_eq!(window.take_answered(&mut taken, &mut cx), 1);
    }
}
