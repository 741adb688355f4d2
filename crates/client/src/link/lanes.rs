//! The lanes of a multiplexed link: one entry per
//! [`Client::pipeline`](crate::Client::pipeline), whose requests' ids name
//! the lane and the place in its window. A pipeline's request takes no entry of its own in
//! the link's table of requests in flight, no reply slot and no permit
//! object: its reply is an index into the window.
//!
//! ```text
//!   id:  1 | lane (16 bits) | generation (15 bits) | place number (low 32 bits)
//! ```
//!
//! The top bit keeps lane ids apart from the table's, which never set it
//! (`InFlight`); the generation keeps a late reply to a lane that ended
//! from the lane that took its entry next.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

#[cfg(test)]
use super::permits::Permits;
use super::window::Window;
use crate::Error;
#[cfg(test)]
use crate::Result;
#[cfg(test)]
use bytes::BytesMut;

/// An id's top bit: a lane's request.
const LANE: u64 = 1 << 63;
/// Lanes one link holds at once; a pipeline beyond them takes a slot per
/// request instead.
const MOST: usize = 1 << 16;
/// A lane entry's generation wraps within these bits.
const GENERATION: u16 = u16::MAX >> 1;

/// The lanes of one link.
#[derive(Debug, Default)]
pub(super) struct Lanes(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    /// Each entry's generation, and its window while a pipeline holds it.
    entries: Vec<(u16, Option<Arc<Window>>)>,
    /// Entries without a window, the most recently freed last.
    free: Vec<u16>,
    /// The connection has ended: no lane is opened any more.
    ended: bool,
}

/// Whether request `id` is a lane's.
pub(super) fn is_lane(id: u64) -> bool {
    id & LANE != 0
}

/// The id of place `seq` of the lane whose ids start with `base`.
pub(super) fn id(base: u64, seq: u64) -> u64 {
    base | (seq & u64::from(u32::MAX))
}

impl Lanes {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a lane for `window`; its ids' common high bits. `None` once
    /// the connection has ended, or while [`MOST`] lanes are open.
    pub(super) fn open(&self, window: Arc<Window>) -> Option<u64> {
        let mut table = self.table();
        if table.ended {
            return None;
        }
        let at = match table.free.pop() {
            Some(at) => at,
            None if table.entries.len() < MOST => {
                table.entries.push((0, None));
                (table.entries.len() - 1) as u16
            }
            None => return None,
        };
        let entry = &mut table.entries[usize::from(at)];
        entry.1 = Some(window);
        Some(LANE | u64::from(at) << 47 | u64::from(entry.0) << 32)
    }

    /// Closes the lane of `base`: replies to it are dropped from now on.
    pub(super) fn close(&self, base: u64) {
        let mut table = self.table();
        let (at, generation) = split(base);
        if let Some(entry) = table.entries.get_mut(usize::from(at)) {
            if entry.0 == generation && entry.1.take().is_some() {
                entry.0 = entry.0.wrapping_add(1) & GENERATION;
                table.free.push(at);
            }
        }
    }

    /// The window of the lane request `id` belongs to, if that lane is
    /// still open.
    pub(super) fn window(&self, id: u64) -> Option<Arc<Window>> {
        let table = self.table();
        let (at, generation) = split(id);
        match table.entries.get(usize::from(at)) {
            Some((g, Some(window))) if *g == generation => Some(window.clone()),
            _ => None,
        }
    }

    /// Hands a reply to its place, if its lane is still open, and gives
    /// back the place among `max_in_flight` it held.
    #[cfg(test)]
    fn answer(&self, id: u64, outcome: Result<BytesMut>, permits: &Permits) {
        if let Some(window) = self.window(id) {
            if let Some(oldest) = window.fill_lane(id as u32, outcome) {
                permits.release(1);
                if oldest {
                    window.wake_reader();
                }
            }
        }
    }

    /// Times out every lane request past its deadline, calling `cancel`
    /// with each one's id, and lowers `next` to the earliest deadline left.
    pub(super) fn expire(
        &self,
        now: Instant,
        next: &mut Option<Instant>,
        mut cancel: impl FnMut(u64),
    ) {
        let table = self.table();
        for (at, (generation, window)) in table.entries.iter().enumerate() {
            if let Some(window) = window {
                let base = LANE | (at as u64) << 47 | u64::from(*generation) << 32;
                window.expire(now, next, |seq| cancel(id(base, seq)));
            }
        }
    }

    /// Whether a lane request has awaited its reply since `since` or longer.
    pub(super) fn sent_before(&self, since: Instant) -> bool {
        let table = self.table();
        table
            .entries
            .iter()
            .filter_map(|(_, window)| window.as_ref())
            .any(|window| window.sent_before(since))
    }

    /// The connection ended: every lane request in flight gets `error()`,
    /// and no lane opens any more.
    pub(super) fn end(&self, error: impl Fn() -> Error) {
        let windows: Vec<Arc<Window>> = {
            let mut table = self.table();
            table.ended = true;
            table.free.clear();
            table.entries.drain(..).filter_map(|(_, w)| w).collect()
        };
        for window in windows {
            window.give_up(&error);
        }
    }
}

/// A lane id's entry and generation.
fn split(id: u64) -> (u16, u16) {
    ((id >> 47) as u16, (id >> 32) as u16 & GENERATION)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use futures::task::noop_waker;

    use super::*;

    /// How long a lane's requests may wait for their replies, in these tests.
    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A link's lanes over `max_in_flight` places, and one lane open on
    /// them: its window and its base id.
    fn open_lane(max_in_flight: usize) -> (Arc<Permits>, Lanes, Arc<Window>, u64) {
        let permits = Arc::new(Permits::new(max_in_flight));
        let lanes = Lanes::default();
        let window = Arc::new(Window::lane(permits.clone(), TIMEOUT));
        let base = lanes.open(window.clone()).unwrap();
        (permits, lanes, window, base)
    }

    fn taken(window: &Window) -> VecDeque<Result<BytesMut>> {
        let mut into = VecDeque::new();
        let waker = noop_waker();
        window.take_answered(&mut into, &mut std::task::Context::from_waker(&waker));
        into
    }

    #[tokio::test]
    async fn replies_reach_their_place_by_id_and_stale_ids_reach_nothing() {
        let (permits, lanes, window, base) = open_lane(8);
        assert!(is_lane(base));
        let first = window.reserve(3);
        assert_eq!(permits.try_acquire_many(2), 2);
        let deadline = Instant::now() + TIMEOUT;
        {
            let mut sending = window.sending();
            sending.sent(first, deadline);
            sending.sent(first + 1, deadline);
        }
        // Place 2 was never sent: a reply naming it is not taken.
        lanes.answer(id(base, first + 2), Ok(BytesMut::from("forged")), &permits);
        lanes.answer(id(base, first + 1), Ok(BytesMut::from("b")), &permits);
        lanes.answer(id(base, first + 1), Ok(BytesMut::from("again")), &permits);
        assert!(taken(&window).is_empty(), "the oldest is not answered yet");
        lanes.answer(id(base, first), Ok(BytesMut::from("a")), &permits);
        window.fill(first + 2, Err(Error::Closed));
        let got = taken(&window);
        assert_eq!(got.len(), 3);
        assert!(matches!(&got[0], Ok(a) if &a[..] == b"a"));
        assert!(matches!(&got[1], Ok(b) if &b[..] == b"b"));
        assert_eq!(
            permits.try_acquire_many(8),
            8,
            "each answer gave its place among max_in_flight back"
        );
        permits.release(8);
        // A closed lane's entry goes to the next lane under a new
        // generation: the old lane's late replies reach neither.
        lanes.close(base);
        let next = Arc::new(Window::lane(permits.clone(), TIMEOUT));
        let again = lanes.open(next.clone()).unwrap();
        assert_ne!(again, base);
        let seq = next.reserve(1);
        assert_eq!(permits.try_acquire_many(1), 1);
        next.sending().sent(seq, deadline);
        lanes.answer(id(base, seq), Ok(BytesMut::from("stale")), &permits);
        assert!(taken(&next).is_empty());
        lanes.answer(id(again, seq), Ok(BytesMut::from("mine")), &permits);
        assert_eq!(taken(&next).len(), 1);
    }

    #[tokio::test]
    async fn deadlines_and_the_end_answer_what_is_in_flight_and_free_its_places() {
        let (permits, lanes, window, base) = open_lane(4);
        let first = window.reserve(3);
        assert_eq!(permits.try_acquire_many(3), 3);
        let now = Instant::now();
        {
            let mut sending = window.sending();
            sending.sent(first, now);
            sending.sent(first + 1, now + TIMEOUT);
            sending.sent(first + 2, now + TIMEOUT);
        }
        assert!(lanes.sent_before(now - TIMEOUT));
        let mut next = None;
        let mut cancelled = Vec::new();
        lanes.expire(now, &mut next, |id| cancelled.push(id));
        assert_eq!(cancelled, vec![id(base, first)]);
        assert_eq!(next, Some(now + TIMEOUT));
        assert_eq!(permits.try_acquire_many(4), 2, "the expired place is free");
        permits.release(2);
        lanes.end(|| Error::Closed);
        let got = taken(&window);
        assert_eq!(got.len(), 3);
        assert!(matches!(got[0], Err(Error::Timeout(_))));
        assert!(matches!(got[1], Err(Error::Closed)));
        assert_eq!(permits.try_acquire_many(4), 4, "every place is free");
        assert!(lanes.open(window).is_none(), "no lane after the end");
    }

    #[test]
    fn a_link_holds_at_most_most_lanes_and_a_closed_one_makes_room() {
        let permits = Arc::new(Permits::new(1));
        let lanes = Lanes::default();
        let window = || Arc::new(Window::lane(permits.clone(), Duration::from_secs(1)));
        let bases: Vec<u64> = (0..MOST).map(|_| lanes.open(window()).unwrap()).collect();
        assert!(
            lanes.open(window()).is_none(),
            "past MOST lanes, a slot each"
        );
        lanes.close(bases[7]);
        let again = lanes.open(window()).unwrap();
        assert_ne!(
            again, bases[7],
            "the entry comes back under a new generation"
        );
        assert!(lanes.open(window()).is_none());
    }
}
