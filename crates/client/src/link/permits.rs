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
pub(super) struct Permit(Option<Arc<Permits>>);

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
                Ok(_) => return Some(Permit(Some(this.clone()))),
                Err(now) => used = now,
            }
        }
    }

    /// Takes up to `n` places at once, without waiting, and returns how
    /// many: a pipeline's batch costs one atomic operation, not one each.
    /// They are given back with [`Permits::release`].
    pub(super) fn try_acquire_many(&self, n: usize) -> usize {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let take = n.min(self.max.saturating_sub(used));
            if take == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                used,
                used + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => used = now,
            }
        }
    }

    /// Gives back `n` places taken by [`Permits::try_acquire_many`] (or
    /// by [`Permit::into_count`]).
    pub(super) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_one();
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

impl Permit {
    /// The place stays taken, counted like one of
    /// [`Permits::try_acquire_many`]'s: given back with [`Permits::release`].
    pub(super) fn into_count(mut self) {
        self.0 = None;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // `None` once counted: an `Option` of the `Arc`, not a flag beside
        // it, keeps a permit (and so each queued request) one word wide.
        if let Some(permits) = &self.0 {
            permits.release(1);
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

    #[tokio::test]
    async fn a_batch_takes_what_is_left_and_its_release_wakes_a_waiter() {
        let permits = Arc::new(Permits::new(5));
        let one = Permits::try_acquire(&permits).unwrap();
        assert_eq!(permits.try_acquire_many(8), 4, "only what is left");
        assert_eq!(permits.try_acquire_many(1), 0);
        one.into_count();
        assert_eq!(
            permits.try_acquire_many(1),
            0,
            "a counted place stays taken"
        );
        let waiting = Permits::acquire(&permits);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        permits.release(2);
        let _got = waiting.await;
        assert_eq!(permits.try_acquire_many(3), 1);
        permits.release(5);
        assert_eq!(permits.used.load(Ordering::Acquire), 0);
    }
}
