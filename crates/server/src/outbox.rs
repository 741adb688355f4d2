//! One connection's outbound queue for frames made outside its driver
//! (pushes, broadcasts, a peer's requests and cancels), bounded in bytes and
//! in frames, and able to evict its oldest push (which tokio's mpsc cannot),
//! so every slow-consumer policy fits one structure. It also wakes the
//! driver: see [`Signal`].
//!
//! Replies do not come through here: the driver that read a request writes
//! its reply straight into the connection's write buffer. The byte budget
//! covers both: the driver publishes how much output it holds unwritten
//! ([`Outbox::publish`]), and a push is admitted only while queued pushes
//! plus that output stay within the budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use enchufe_engine::notify::until_notified;
use enchufe_engine::Counted;
use enchufe_framing::OutFrame;
use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// Bytes queued across every connection of a server.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    fn has_room(&self, n: usize) -> bool {
        self.used.load(Ordering::Relaxed) + n <= self.limit
    }

    /// Bytes queued now, server-wide.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

pub(crate) use enchufe_engine::Signal;

/// What each bit of a server connection's [`Signal`] means.
pub(crate) mod flag {
    /// Frames were queued in the outbox.
    pub(crate) const OUTBOX: u8 = 1;
    /// [`Connection::close`](crate::Connection::close) (or `drain`) was called.
    pub(crate) const CLOSE: u8 = 2;
    /// The server began a graceful shutdown: no new requests.
    pub(crate) const SHUTDOWN: u8 = 4;
    /// The shutdown grace period is over: stop now.
    pub(crate) const ABORT: u8 = 8;
}

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Most frames queued here.
    max_frames: usize,
    /// Bytes the connection may hold: queued here plus in the driver.
    budget: usize,
    global: Arc<Budget>,
    /// Output the driver holds unwritten, as last published.
    in_driver: AtomicUsize,
    /// Wakes senders waiting for room: bytes were written or taken, or the
    /// outbox closed.
    writable: Notify,
    /// Senders waiting for room, so the driver notifies only when someone
    /// waits (the common case has nobody).
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct State {
    /// Frames in send order; the flag marks pushes, which may be evicted.
    /// Starts empty and unallocated.
    frames: VecDeque<(OutFrame, bool)>,
    /// Bytes of `frames` (payload plus length prefix).
    bytes: usize,
    closed: bool,
}

/// A frame's cost against the budgets: what it takes on the wire.
fn cost(frame: &OutFrame) -> usize {
    enchufe_framing::HEADER_LEN + frame.len()
}

impl Outbox {
    pub(crate) fn new(max_frames: usize, budget: usize, global: Arc<Budget>) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            max_frames: max_frames.max(1),
            budget: budget.max(1),
            global,
            in_driver: AtomicUsize::new(0),
            writable: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a frame of `n` bytes fits now. An empty connection always
    /// takes one frame, so frames over the budget can still be sent.
    fn fits(&self, state: &State, n: usize) -> bool {
        let held = state.bytes + self.in_driver.load(Ordering::Relaxed);
        if held == 0 {
            return true;
        }
        state.frames.len() < self.max_frames && held + n <= self.budget && self.global.has_room(n)
    }

    /// Whether `frame` would be queued now.
    pub(crate) fn would_fit(&self, frame: &OutFrame) -> bool {
        let state = self.state();
        !state.closed && self.fits(&state, cost(frame))
    }

    fn push_back(&self, state: &mut State, frame: OutFrame, is_push: bool) {
        let n = cost(&frame);
        state.bytes += n;
        self.global.add(n);
        state.frames.push_back((frame, is_push));
    }

    /// Queues a frame if there is room now.
    pub(crate) fn try_send(
        &self,
        frame: OutFrame,
        is_push: bool,
        signal: &Signal,
    ) -> Result<(), Refused> {
        let mut state = self.state();
        if state.closed {
            return Err(Refused::Closed);
        }
        if !self.fits(&state, cost(&frame)) {
            return Err(Refused::Full);
        }
        self.push_back(&mut state, frame, is_push);
        drop(state);
        signal.raise(flag::OUTBOX);
        Ok(())
    }

    /// Queues a frame, ignoring the budgets (control frames: cancels, pings),
    /// unless closed.
    pub(crate) fn force(&self, frame: OutFrame, signal: &Signal) -> Result<(), Refused> {
        let mut state = self.state();
        if state.closed {
            return Err(Refused::Closed);
        }
        self.push_back(&mut state, frame, false);
        drop(state);
        signal.raise(flag::OUTBOX);
        Ok(())
    }

    /// Queues a frame, waiting for room. Not bounded in time by itself: the
    /// caller wraps it in its write timeout.
    pub(crate) async fn send(
        &self,
        frame: OutFrame,
        is_push: bool,
        signal: &Signal,
    ) -> Result<(), Refused> {
        let mut frame = Some(frame);
        let _waiting = Counted::new(&self.waiting);
        until_notified(&self.writable, || {
            let mut state = self.state();
            if state.closed {
                return Some(Err(Refused::Closed));
            }
            if !self.fits(&state, frame.as_ref().map_or(0, cost)) {
                return None;
            }
            if let Some(frame) = frame.take() {
                self.push_back(&mut state, frame, is_push);
            }
            drop(state);
            signal.raise(flag::OUTBOX);
            Some(Ok(()))
        })
        .await
    }

    /// Queues a push, evicting the oldest queued pushes until it fits.
    /// Returns how many were evicted; when only replies and control frames
    /// are queued, the new push is the one refused.
    pub(crate) fn send_evicting(&self, frame: OutFrame, signal: &Signal) -> Result<usize, Refused> {
        let mut state = self.state();
        if state.closed {
            return Err(Refused::Closed);
        }
        let n = cost(&frame);
        // Evict only if evicting can make room: never drop old pushes and
        // then refuse the new one too.
        let evictable: usize = state
            .frames
            .iter()
            .filter(|(_, is_push)| *is_push)
            .map(|(f, _)| cost(f))
            .sum();
        let unevictable = State {
            frames: VecDeque::new(),
            bytes: state.bytes - evictable,
            closed: false,
        };
        if !self.fits(&state, n) && !self.fits(&unevictable, n) {
            return Err(Refused::Full);
        }
        let mut evicted = 0;
        while !self.fits(&state, n) {
            match state.frames.iter().position(|(_, is_push)| *is_push) {
                Some(oldest) => {
                    if let Some((old, _)) = state.frames.remove(oldest) {
                        let freed = cost(&old);
                        state.bytes -= freed;
                        self.global.sub(freed);
                    }
                    evicted += 1;
                }
                None => return Err(Refused::Full),
            }
        }
        self.push_back(&mut state, frame, true);
        drop(state);
        signal.raise(flag::OUTBOX);
        Ok(evicted)
    }

    /// Hands queued frames to the driver, oldest first, while `take` accepts
    /// them (it returns false when the driver holds enough). Returns how
    /// many were taken.
    pub(crate) fn drain(&self, mut take: impl FnMut(OutFrame) -> bool) -> usize {
        let mut state = self.state();
        let mut taken = 0;
        while let Some((frame, _)) = state.frames.front() {
            let n = cost(frame);
            let Some((frame, _)) = state.frames.pop_front() else {
                break;
            };
            state.bytes -= n;
            self.global.sub(n);
            taken += 1;
            if !take(frame) {
                break;
            }
        }
        taken
    }

    /// Whether frames are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.state().frames.is_empty()
    }

    /// The driver's unwritten output is now `bytes`; wakes senders waiting
    /// for room when it shrank.
    pub(crate) fn publish(&self, bytes: usize) {
        let before = self.in_driver.swap(bytes, Ordering::Relaxed);
        if bytes > before {
            self.global.add(bytes - before);
        } else if before > bytes {
            self.global.sub(before - bytes);
            self.wake_senders();
        }
    }

    fn wake_senders(&self) {
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.writable.notify_waiters();
        }
    }

    /// Refuses new frames; those queued can still be taken.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.writable.notify_waiters();
    }

    /// Drops everything queued and gives its bytes back to the server (the
    /// connection is gone).
    pub(crate) fn clear(&self) {
        let mut state = self.state();
        state.closed = true;
        state.frames = VecDeque::new();
        self.global.sub(state.bytes);
        state.bytes = 0;
        drop(state);
        self.publish(0);
        self.writable.notify_waiters();
    }

    /// Frames queued now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(n: u8, len: usize) -> OutFrame {
        OutFrame::plain(Bytes::from(vec![n; len]))
    }

    fn new_outbox(frames: usize, budget: usize) -> (Outbox, Arc<Budget>, Signal) {
        let global = Arc::new(Budget::new(usize::MAX / 2));
        (
            Outbox::new(frames, budget, global.clone()),
            global,
            Signal::default(),
        )
    }

    fn take_all(outbox: &Outbox) -> Vec<u8> {
        let mut out = Vec::new();
        outbox.drain(|f| {
            out.push(f.body()[0]);
            true
        });
        out
    }

    #[tokio::test]
    async fn the_budget_is_in_bytes_and_one_frame_always_fits_an_empty_queue() {
        // 100 bytes of budget: frames cost their length plus 4.
        let (outbox, global, signal) = new_outbox(1000, 100);
        outbox.try_send(frame(1, 500), true, &signal).unwrap();
        assert_eq!(
            outbox.try_send(frame(2, 1), true, &signal),
            Err(Refused::Full)
        );
        assert_eq!(global.used(), 504);
        assert_eq!(take_all(&outbox), [1]);
        assert_eq!(global.used(), 0);
        for n in 0..4 {
            outbox.try_send(frame(n, 21), true, &signal).unwrap();
        }
        assert_eq!(
            outbox.try_send(frame(9, 21), true, &signal),
            Err(Refused::Full)
        );
        assert!(signal.take(flag::OUTBOX));
    }

    #[tokio::test]
    async fn the_drivers_unwritten_output_counts_and_waiters_wake_when_it_drains() {
        let (outbox, _global, signal) = new_outbox(1000, 100);
        outbox.publish(90);
        assert_eq!(
            outbox.try_send(frame(1, 10), true, &signal),
            Err(Refused::Full)
        );
        let waiting = outbox.send(frame(1, 10), true, &signal);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        outbox.publish(0);
        waiting.await.unwrap();
        assert_eq!(outbox.len(), 1);
    }

    #[tokio::test]
    async fn the_server_budget_bounds_every_connection_together() {
        let global = Arc::new(Budget::new(100));
        let signal = Signal::default();
        let a = Outbox::new(1000, 1000, global.clone());
        let b = Outbox::new(1000, 1000, global.clone());
        a.try_send(frame(1, 60), true, &signal).unwrap();
        a.try_send(frame(2, 30), true, &signal).unwrap();
        // b is empty, so it still takes one frame; not a second.
        b.try_send(frame(3, 60), true, &signal).unwrap();
        assert_eq!(b.try_send(frame(4, 1), true, &signal), Err(Refused::Full));
        assert_eq!(global.used(), 64 + 34 + 64);
    }

    #[tokio::test]
    async fn eviction_takes_the_oldest_pushes_never_a_reply() {
        let (outbox, _global, signal) = new_outbox(1000, 3 * 5);
        outbox.force(frame(1, 1), &signal).unwrap(); // not a push
        outbox.try_send(frame(2, 1), true, &signal).unwrap();
        outbox.try_send(frame(3, 1), true, &signal).unwrap();
        assert_eq!(outbox.send_evicting(frame(4, 1), &signal), Ok(1));
        assert_eq!(take_all(&outbox), [1, 3, 4]);

        let (only_replies, _global, signal) = new_outbox(1, 1000);
        only_replies.force(frame(1, 1), &signal).unwrap();
        assert_eq!(
            only_replies.send_evicting(frame(2, 1), &signal),
            Err(Refused::Full)
        );
    }

    #[tokio::test]
    async fn close_wakes_waiters_and_clear_gives_bytes_back() {
        let (outbox, global, signal) = new_outbox(1, 1000);
        let outbox = Arc::new(outbox);
        outbox.try_send(frame(1, 10), true, &signal).unwrap();
        let sender = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.send(frame(2, 1), true, &Signal::default()).await })
        };
        tokio::task::yield_now().await;
        outbox.close();
        assert_eq!(sender.await.unwrap(), Err(Refused::Closed));
        assert_eq!(global.used(), 14);
        outbox.clear();
        assert_eq!(global.used(), 0);
        assert!(outbox.is_empty());
    }
}
