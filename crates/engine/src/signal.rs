//! [`Signal`]: how other tasks wake a connection driver without a future per
//! frame.

use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Context;

use futures::task::AtomicWaker;

/// A few flags and one registered waker: what other tasks use to tell a
/// connection's driver that something happened (frames queued, close asked,
/// shutdown). Raising a flag costs an atomic `or` and, when the driver is
/// waiting, one wakeup; the driver reads the flags with a plain load on each
/// turn and registers its waker only before it waits. The meaning of each
/// bit is the driver's.
///
/// ```
/// use enchufe_engine::Signal;
/// const QUEUED: u8 = 1;
/// let signal = Signal::default();
/// signal.raise(QUEUED);
/// assert!(signal.take(QUEUED));
/// assert!(!signal.is_raised(QUEUED));
/// ```
#[derive(Debug, Default)]
pub struct Signal {
    flags: AtomicU8,
    waker: AtomicWaker,
}

impl Signal {
    /// Raises `bits` and wakes the driver.
    pub fn raise(&self, bits: u8) {
        self.flags.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Raises `bits` without waking the driver: for a caller that polls the
    /// driver itself right after (it sees them then).
    pub fn set(&self, bits: u8) {
        self.flags.fetch_or(bits, Ordering::AcqRel);
    }

    /// Registers the driver's waker, then reads the flags (in that order, so
    /// a flag raised in between still wakes it).
    pub fn poll(&self, cx: &Context<'_>) -> u8 {
        self.waker.register(cx.waker());
        self.flags.load(Ordering::Acquire)
    }

    /// The flags raised now, without registering a waker.
    pub fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Lowers `bits`; true if any of them was raised.
    pub fn take(&self, bits: u8) -> bool {
        self.flags.fetch_and(!bits, Ordering::AcqRel) & bits != 0
    }

    /// Whether any of `bits` is raised.
    pub fn is_raised(&self, bits: u8) -> bool {
        self.flags.load(Ordering::Acquire) & bits != 0
    }
}

#[cfg(test)]
mod tests {
    use futures_test::task::new_count_waker;

    use super::*;

    #[test]
    fn set_raises_without_waking_and_raise_wakes() {
        let signal = Signal::default();
        let (waker, count) = new_count_waker();
        assert_eq!(signal.poll(&Context::from_waker(&waker)), 0);
        signal.set(1);
        assert!(signal.is_raised(1));
        assert_eq!(count.get(), 0, "set wakes nobody");
        signal.raise(2);
        assert_eq!(count.get(), 1);
        assert_eq!(signal.flags(), 3);
    }
}
