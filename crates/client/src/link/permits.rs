//! The bound on requests awaiting replies (`max_in_flight`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The bound on requests awaiting replies (`max_in_flight`): an atomic
/// count, so taking and giving back a place costs two atomic operations and
/// no lock (tokio's `Semaphore` locks its waiters' list on every release,
/// which showed in the client's profile). Only a request that finds every
/// place taken waits, on a `Notify`.
#[derive(Debug)]
pub(super) struct Permits {
    used: AtomicUsize,
    max: usize,
    /// Requests waiting for a place.
    waiting: AtomicUsize,
    freed: Notify,
}

/// One request's place among the `max_in_flight`; given back when dropped.
#[derive(Debug)]
pub(super) struct Permit(Arc<Permits>);

impl Permits {
    pub(super) fn new(max: usize) -> Permits {
        Permits {
            used: AtomicUsize::new(0),
            max: max.max(1),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    pub(super) fn try_acquire(this: &Arc<Permits>) -> Option<Permit> {
        let mut used = this.used.load(Ordering::Relaxed);
        loop {
            if used >= this.max {
                return None;
            }
            match this.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Permit(this.clone())),
                Err(now) => used = now,
            }
        }
    }

    /// Waits for a place (not bounded by itself: the caller's deadline is).
    ///
    /// # Cancel safety
    /// Dropping the future leaves no trace: the waiter count is a guard,
    /// and a notification taken by a dropped waiter passes to the next
    /// (tokio's `Notified` forwards it).
    pub(super) async fn acquire(this: &Arc<Permits>) -> Permit {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        this.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&this.waiting);
        loop {
            let freed = this.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(permit) = Permits::try_acquire(this) {
                return permit;
            }
            freed.await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
        if self.0.waiting.load(Ordering::Acquire) > 0 {
            self.0.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn places_are_bounded_given_back_on_drop_and_waiters_wake() {
        let permits = Arc::new(Permits::new(2));
        let a = Permits::try_acquire(&permits).unwrap();
        let _b = Permits::try_acquire(&permits).unwrap();
        assert!(Permits::try_acquire(&permits).is_none());
        let waiting = Permits::acquire(&permits);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(a);
        let _c = waiting.await;
        assert!(Permits::try_acquire(&permits).is_none());
        // A waiter that gives up leaves nothing behind.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), Permits::acquire(&permits));
        assert!(gave_up.await.is_err());
        assert_eq!(permits.waiting.load(Ordering::Acquire), 0);
    }
}
