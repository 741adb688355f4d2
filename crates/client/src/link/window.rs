//! A pipeline's reply places: one per request in flight, in the order the
//! requests were made, filled by the driver and taken by the one task that
//! reads the pipeline. No channel per request and no wakeup per reply: the
//! driver wakes the reader only when the place it waits on (the oldest) is
//! filled, and a reader already woken is not woken again.
//!
//! A multiplexed pipeline's window is also its *lane* ([`super::lanes`]):
//! its requests' ids name their places, so a place holds its request's
//! deadline and its place among `max_in_flight` itself, and a reply costs
//! an index into the window, no slot of its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Context;
use std::time::Duration;

use bytes::BytesMut;
use futures::task::AtomicWaker;
use tokio::time::Instant;

use super::permits::Permits;
use crate::{Error, Result};

/// The reply places of one pipeline. Holds at most as many places as the
/// pipeline has requests in flight (its `depth`): the pipeline reserves a
/// place only when it has room for one.
#[derive(Debug, Default)]
pub(crate) struct Window {
    places: Mutex<Places>,
    /// The pipeline's reader, when it waits for the oldest place.
    reader: AtomicWaker,
    /// A lane's: the link's `max_in_flight` places, which its requests in
    /// flight hold, and the request timeout (for the error and for when a
    /// request was sent).
    lane: Option<(Arc<Permits>, Duration)>,
}

#[derive(Debug, Default)]
struct Places {
    /// The number of `places[0]`.
    first: u64,
    places: VecDeque<Place>,
}

/// One place. An enum, not fields, so that it is no larger than its
/// outcome: places are moved per request.
#[derive(Debug, Default)]
enum Place {
    /// Reserved, not answered yet (a lane's request not yet queued, or any
    /// request of a pipeline without a lane).
    #[default]
    Reserved,
    /// A lane's request in flight, with its deadline. It holds a place
    /// among `max_in_flight` until answered.
    Sent(Instant),
    Answered(Result<BytesMut>),
}

/// A window held while a batch of its lane's requests is queued
/// ([`Window::sending`]).
pub(crate) struct Sending<'a>(MutexGuard<'a, Places>);

impl Sending<'_> {
    /// Place `seq`'s request is queued, with its deadline: it holds a
    /// place among `max_in_flight` (taken by the caller) until answered.
    pub(crate) fn sent(&mut self, seq: u64, deadline: Instant) {
        let first = self.0.first;
        if let Some(place) = seq
            .checked_sub(first)
            .and_then(|at| self.0.places.get_mut(at as usize))
        {
            if let Place::Reserved = place {
                *place = Place::Sent(deadline);
            }
        }
    }
}

impl Window {
    /// A lane's window: its requests' places among `permits` are taken by
    /// the pipeline, given back here as each is answered.
    pub(super) fn lane(permits: Arc<Permits>, timeout: Duration) -> Window {
        Window {
            lane: Some((permits, timeout)),
            ..Window::default()
        }
    }

    /// A lane's request timeout (zero for a window without a lane).
    pub(super) fn timeout(&self) -> Duration {
        self.lane
            .as_ref()
            .map_or(Duration::ZERO, |(_, timeout)| *timeout)
    }

    fn places(&self) -> MutexGuard<'_, Places> {
        self.places.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back `n` places among `max_in_flight` (a lane's).
    pub(super) fn release(&self, n: usize) {
        if let Some((permits, _)) = &self.lane {
            permits.release(n);
        }
    }

    /// Reserves `n` more places and returns the number of the first; each
    /// number goes with its request's slot.
    pub(crate) fn reserve(&self, n: usize) -> u64 {
        let mut places = self.places();
        let first = places.first + places.places.len() as u64;
        places
            .places
            .extend(std::iter::repeat_with(Place::default).take(n));
        first
    }

    /// Gives back the `n` newest places, reserved and never used.
    pub(crate) fn unreserve(&self, n: usize) {
        let mut places = self.places();
        let keep = places.places.len().saturating_sub(n);
        places.places.truncate(keep);
    }

    /// Places reserved and not yet taken.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.places().places.len()
    }

    /// Holds the window to mark a batch of requests sent.
    pub(crate) fn sending(&self) -> Sending<'_> {
        Sending(self.places())
    }

    /// Answers place `seq`, reserved and not sent in a lane (a place
    /// answers once): a slot's outcome, or a request's that could not be
    /// sent. Wakes the reader if this is the place it waits on.
    pub(crate) fn fill(&self, seq: u64, outcome: Result<BytesMut>) {
        let oldest = {
            let mut places = self.places();
            let Some(at) = seq.checked_sub(places.first) else {
                return;
            };
            match places.places.get_mut(at as usize) {
                // Known to hold nothing to drop: a plain store.
                Some(place @ Place::Reserved) => *place = Place::Answered(outcome),
                _ => return,
            }
            at == 0
        };
        if oldest {
            self.reader.wake();
        }
    }

    /// A lane's reply, to the request whose id ends in `low` (the low 32
    /// bits of its place's number): only a place whose request was sent
    /// and not yet answered takes it. `Some` when it did, with whether it
    /// was the oldest place: the caller then gives back the place among
    /// `max_in_flight` it held ([`Permits::release`]) and wakes the reader
    /// ([`Window::wake_reader`]), once for a read's replies.
    pub(super) fn fill_lane(&self, low: u32, outcome: Result<BytesMut>) -> Option<bool> {
        let mut places = self.places();
        // The place numbers in the window span less than 2^32.
        let at = low.wrapping_sub(places.first as u32);
        let place = places.places.get_mut(at as usize)?;
        match place {
            Place::Sent(_) => *place = Place::Answered(outcome),
            _ => return None,
        }
        Some(at == 0)
    }

    /// Wakes the reader, if it waits (after [`Window::fill_lane`] filled
    /// the oldest place).
    pub(super) fn wake_reader(&self) {
        self.reader.wake();
    }

    /// Drops every place: the pipeline is gone, and what it did not take
    /// is freed now, not when the last reply to it comes.
    pub(super) fn clear(&self) {
        let dropped = std::mem::take(&mut self.places().places);
        drop(dropped);
    }

    /// Answers with a timeout every lane request past its deadline, calling
    /// `expired` with each one's place number (its request is cancelled),
    /// and lowers `next` to the earliest deadline left.
    pub(super) fn expire(
        &self,
        now: Instant,
        next: &mut Option<Instant>,
        mut expired: impl FnMut(u64),
    ) {
        let Some((_, timeout)) = &self.lane else {
            return;
        };
        let mut released = 0;
        let mut oldest = false;
        {
            let mut places = self.places();
            let first = places.first;
            for (at, place) in places.places.iter_mut().enumerate() {
                match *place {
                    Place::Sent(deadline) if deadline <= now => {
                        *place = Place::Answered(Err(Error::Timeout(*timeout)));
                        released += 1;
                        oldest |= at == 0;
                        expired(first + at as u64);
                    }
                    Place::Sent(deadline) => {
                        *next = Some(next.map_or(deadline, |n| n.min(deadline)));
                    }
                    _ => {}
                }
            }
        }
        self.release(released);
        if oldest {
            self.reader.wake();
        }
    }

    /// Answers every lane request in flight with `error()` and returns
    /// their place numbers: the pipeline gave up on them, or the
    /// connection ended.
    pub(super) fn give_up(&self, error: impl Fn() -> Error) -> Vec<u64> {
        let mut gone = Vec::new();
        {
            let mut places = self.places();
            let first = places.first;
            for (at, place) in places.places.iter_mut().enumerate() {
                if let Place::Sent(_) = place {
                    *place = Place::Answered(Err(error()));
                    gone.push(first + at as u64);
                }
            }
        }
        self.release(gone.len());
        if !gone.is_empty() {
            self.reader.wake();
        }
        gone
    }

    /// Whether a lane request in flight was sent at or before `since` (one
    /// awaits its reply that long).
    pub(super) fn sent_before(&self, since: Instant) -> bool {
        let Some((_, timeout)) = &self.lane else {
            return false;
        };
        self.places().places.iter().any(|place| match place {
            Place::Sent(deadline) => deadline
                .checked_sub(*timeout)
                .is_some_and(|sent| sent <= since),
            _ => false,
        })
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
        while let Some(Place::Answered(_)) = places.places.front() {
            if let Some(Place::Answered(outcome)) = places.places.pop_front() {
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
    use futures_test::task::new_count_waker;

    use super::*;
    use crate::Error;

    #[test]
    fn outcomes_come_out_in_request_order_and_wake_the_reader_once_per_wait() {
        let window = Window::default();
        let (waker, count) = new_count_waker();
        let mut cx = Context::from_waker(&waker);
        let wakes = || count.get();
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
