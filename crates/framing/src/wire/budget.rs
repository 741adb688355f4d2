//! [`MemoryBudget`]: one limit on the bytes that large frames still
//! arriving hold, shared by many wires (every connection of a server).
//!
//! A wire reads a frame of [`LARGE_FRAME`] bytes or more into a buffer of
//! its own that grows with the bytes that arrive. Each connection is
//! bounded by the frame limit, but many connections each sending most of a
//! large frame add up: 300 connections holding 8 MiB − 1 of an 8 MiB frame
//! are 2.4 GiB. With a budget, a large frame's buffer grows only by bytes
//! the budget grants; past it, the wire stops reading that connection
//! (TCP's flow control then holds the sender back) until other frames
//! complete or their connections end and give their bytes back.
//!
//! ```text
//!  wire A: [own buffer 6 MiB ......]  --grow?--> budget: held 30/32 MiB -> no: A waits
//!  wire B: [own buffer 2 MiB]  frame complete -> gives 2 MiB back, wakes A
//! ```
//!
//! Nothing is charged per small frame: the first [`UNCHARGED`] bytes of a
//! large frame's buffer are the connection's own allowance (as its read
//! buffer for small frames is), and only growth past them touches the
//! budget's atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Waker};

use super::limits::LARGE_FRAME;

/// Bytes of a large frame's buffer not charged to a [`MemoryBudget`]: its
/// first allocation (at most twice what one read brought, 2 × 64 KiB),
/// which replaces the read buffer the bytes arrived in. A connection may
/// hold this much outside the budget, as it may hold a small frame.
pub(crate) const UNCHARGED: usize = 2 * LARGE_FRAME;

/// A limit on the bytes large frames still arriving may hold, across every
/// wire it is given to ([`Wire::set_memory_budget`](super::Wire::set_memory_budget)).
/// Cheap to clone: the clones share one count.
///
/// The bytes held never pass the limit, except by one frame growing alone
/// (nothing else held): a frame larger than the limit still arrives, one
/// at a time.
///
/// A wire whose frame would grow past the budget waits, reading nothing,
/// until bytes are given back (a frame completed, a connection ended); the
/// connection's own deadlines (a frame that does not complete in time)
/// still apply while it waits, so waiting cannot last forever.
///
/// ```
/// use enchufe_framing::MemoryBudget;
/// let budget = MemoryBudget::new(32 << 20);
/// assert_eq!((budget.limit(), budget.held(), budget.pauses()), (32 << 20, 0, 0));
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    limit: usize,
    held: AtomicUsize,
    /// The most ever held at once.
    peak: AtomicUsize,
    /// Times a wire stopped reading because its frame could not grow.
    pauses: AtomicU64,
    /// Wires waiting for bytes to be given back; woken all at once (each
    /// tries again), which only happens under memory pressure.
    waiting: Mutex<Vec<Waker>>,
    /// Whether `waiting` may hold a waker: giving bytes back looks at the
    /// list only then.
    anyone_waiting: AtomicBool,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (at least 128 KiB, so that a frame can
    /// always grow past its first buffer once the others are done).
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget(Arc::new(Shared {
            limit: limit.max(UNCHARGED),
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            pauses: AtomicU64::new(0),
            waiting: Mutex::new(Vec::new()),
            anyone_waiting: AtomicBool::new(false),
        }))
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes held now by large frames still arriving.
    pub fn held(&self) -> usize {
        self.0.held.load(Ordering::Relaxed)
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Times a wire stopped reading because its frame could not grow
    /// within the budget.
    pub fn pauses(&self) -> u64 {
        self.0.pauses.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit under the limit.
    fn try_take(&self, n: usize) -> bool {
        let limit = self.0.limit;
        let taken = self
            .0
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                // Alone, a frame may always grow: one larger than the
                // limit still arrives, if only one at a time.
                held.checked_add(n)
                    .filter(|&after| after <= limit || held == 0)
            });
        match taken {
            Ok(before) => {
                self.0.peak.fetch_max(before + n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes `n` bytes whatever the limit: bytes that exist already.
    fn force(&self, n: usize) {
        let before = self.0.held.fetch_add(n, Ordering::AcqRel);
        self.0.peak.fetch_max(before + n, Ordering::Relaxed);
    }

    /// Gives `n` bytes back and wakes the wires waiting for room.
    fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.0.held.fetch_sub(n, Ordering::AcqRel);
        if self.0.anyone_waiting.load(Ordering::Acquire) {
            let wakers = {
                let mut waiting = self
                    .0
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                self.0.anyone_waiting.store(false, Ordering::Release);
                std::mem::take(&mut *waiting)
            };
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    /// Registers `cx` to be woken when bytes are given back.
    fn wait(&self, cx: &mut Context<'_>) {
        let mut waiting = self
            .0
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        self.0.anyone_waiting.store(true, Ordering::Release);
    }
}

/// What one large frame's buffer holds of a budget; given back when the
/// frame is handed out or dropped with its connection.
#[derive(Debug, Default)]
pub(super) struct Charge {
    budget: Option<MemoryBudget>,
    bytes: usize,
    /// This frame is waiting for room (counted once per wait).
    paused: bool,
}

impl Charge {
    /// A charge on `budget` (none: nothing is counted) for a buffer of
    /// `capacity` bytes, which exists already.
    pub(super) fn new(budget: Option<&MemoryBudget>, capacity: usize) -> Charge {
        let mut charge = Charge {
            budget: budget.cloned(),
            bytes: 0,
            paused: false,
        };
        charge.settle(capacity);
        charge
    }

    /// Whether a buffer of `capacity` bytes fits: `true` once its bytes
    /// are taken. `false`: no room, and the task is woken when there may
    /// be some.
    pub(super) fn grow_to(&mut self, capacity: usize, cx: &mut Context<'_>) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let more = charged(capacity).saturating_sub(self.bytes);
        if more == 0 || budget.try_take(more) {
            self.bytes += more;
            self.paused = false;
            return true;
        }
        budget.wait(cx);
        // Given back between the failed take and the registration: the
        // wakeup was missed, so try once more now.
        if budget.try_take(more) {
            self.bytes += more;
            self.paused = false;
            return true;
        }
        if !self.paused {
            self.paused = true;
            budget.0.pauses.fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    /// Makes the charge what a buffer of `capacity` bytes costs, now that
    /// it is allocated (the allocator may round up a little).
    pub(super) fn settle(&mut self, capacity: usize) {
        let Some(budget) = &self.budget else {
            return;
        };
        let now = charged(capacity);
        if now > self.bytes {
            budget.force(now - self.bytes);
        } else {
            budget.give(self.bytes - now);
        }
        self.bytes = now;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.bytes);
        }
    }
}

/// What a large frame's buffer of `capacity` bytes costs the budget.
fn charged(capacity: usize) -> usize {
    capacity.saturating_sub(UNCHARGED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_charged_past_the_allowance_and_given_back_on_drop() {
        let limit = UNCHARGED;
        let budget = MemoryBudget::new(limit);
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut a = Charge::new(Some(&budget), UNCHARGED);
        assert_eq!(budget.held(), 0, "the first buffer is the allowance");
        assert!(a.grow_to(UNCHARGED + limit - 100, &mut cx));
        assert_eq!(budget.held(), limit - 100);
        let mut b = Charge::new(Some(&budget), 1000);
        assert!(!b.grow_to(UNCHARGED + 400, &mut cx), "over the limit");
        assert!(!b.grow_to(UNCHARGED + 400, &mut cx));
        assert_eq!(budget.pauses(), 1, "one wait, counted once");
        drop(a);
        assert_eq!(budget.held(), 0);
        assert!(b.grow_to(UNCHARGED + 400, &mut cx));
        assert_eq!((budget.held(), budget.peak()), (400, limit - 100));
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn giving_back_wakes_the_waiting() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let budget = MemoryBudget::new(UNCHARGED);
        let mut full = Charge::new(Some(&budget), 0);
        full.settle(2 * UNCHARGED);
        let mut waiting = Charge::new(Some(&budget), 0);
        assert!(!waiting.grow_to(2 * UNCHARGED, &mut cx));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        drop(full);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(waiting.grow_to(2 * UNCHARGED, &mut cx));
    }
}
