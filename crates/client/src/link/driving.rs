//! Who polls the link's driver: its own task, or a pipeline's task that
//! has just queued a batch and writes it at once.
//!
//! A pipeline that queues its next requests would otherwise wake the
//! driver's task and wait for it to be polled after the pipeline's own
//! turn (after its caller has taken the replies), a second task and a
//! later write per round trip. Instead, the pipeline holds the driver
//! while it queues, polls it once from its own task and so writes the
//! batch before it hands the replies out.
//!
//! The driver is polled, wherever from, with its own task's waker: the
//! socket, the timer and the signal always wake the driver's task, so the
//! link goes on (pushes, other requests, deadlines, its end) whether or
//! not the pipeline is ever polled again. Whoever finds the driver held
//! does not wait: the driver's task asks the holder to wake it when done;
//! a pipeline queues as before and raises the signal, which wakes the
//! driver's task.
//!
//! ```text
//!   driver task --take_or_ask--+                    Turn: FREE -> HELD -> FREE
//!                              +--> Driver::poll(the driver task's waker)
//!   pipeline -----try_take-----+    taken: the task sets AGAIN and is woken
//!                                   when it is given back; a pipeline raises
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Span;

use super::driver::{Driver, Stop};

/// Nobody polls the driver.
const FREE: u8 = 0;
/// Someone polls the driver.
const HELD: u8 = 1;
/// Someone polls the driver, and its task found it held: the holder wakes
/// the task when done.
const AGAIN: u8 = 2;

/// A link's driver as its handles see it: polled in place by a pipeline
/// that has just queued its requests.
pub(super) trait Drive: Send + Sync + fmt::Debug {
    /// Calls `queue` with whether the driver is held by the caller; when it
    /// is, the frames `queue` puts in the shared queue need no wakeup (it
    /// raises the signal's bits with [`Signal::set`](enchufe_engine::Signal::set)),
    /// and the driver is polled once from here, which writes them. When it
    /// is not (its task polls it now, it has stopped, or it was never
    /// polled yet), `queue` raises the signal as usual.
    fn drive(&self, queue: &mut dyn FnMut(bool));
}

/// The driver, shared by its task and the link's handles.
pub(super) struct Driving<Io> {
    turn: Turn,
    /// Locked only by whoever has the turn: never contended.
    inner: Mutex<Inner<Io>>,
    /// The driver task's span, entered while a handle polls the driver.
    span: Span,
}

struct Inner<Io> {
    /// Taken by the task when the driver stops.
    driver: Option<Driver<Io>>,
    /// The driver task's waker, once it was polled.
    waker: Option<Waker>,
    /// Why the driver stopped, when a handle's poll saw it: the task ends it.
    stop: Option<Stop>,
}

impl<Io> fmt::Debug for Driving<Io> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driving")
            .field("turn", &self.turn)
            .finish_non_exhaustive()
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin + Send + 'static> Driving<Io> {
    pub(super) fn new(driver: Driver<Io>, span: Span) -> Arc<Self> {
        Arc::new(Driving {
            turn: Turn::default(),
            inner: Mutex::new(Inner {
                driver: Some(driver),
                waker: None,
                stop: None,
            }),
            span,
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner<Io>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The driver's task: polls the driver until it stops, then ends the
    /// link.
    pub(super) async fn run(self: Arc<Self>) {
        let stop = std::future::poll_fn(|cx| self.poll_task(cx)).await;
        let driver = self.inner().driver.take();
        if let Some(driver) = driver {
            driver.finish(stop);
        }
    }

    /// One poll of the driver by its task, unless a handle has the turn
    /// (it wakes the task when done).
    fn poll_task(&self, cx: &mut Context<'_>) -> Poll<Stop> {
        let Some(_turn) = self.turn.take_or_ask(cx.waker()) else {
            return Poll::Pending;
        };
        let mut inner = self.inner();
        let Inner {
            driver,
            waker,
            stop,
        } = &mut *inner;
        if let Some(stop) = stop.take() {
            return Poll::Ready(stop);
        }
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        match driver.as_mut() {
            Some(driver) => driver.poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drive for Driving<Io> {
    fn drive(&self, queue: &mut dyn FnMut(bool)) {
        let Some(_turn) = self.turn.try_take() else {
            queue(false);
            return;
        };
        let mut inner = self.inner();
        let Inner {
            driver,
            waker,
            stop,
        } = &mut *inner;
        let (Some(driver), Some(waker), None) = (driver.as_mut(), waker.as_ref(), stop.as_ref())
        else {
            // Not polled yet (its first poll takes the queue), or stopped.
            queue(false);
            return;
        };
        queue(true);
        let _span = self.span.enter();
        // Polled with its task's waker: whatever it waits on wakes its task.
        if let Poll::Ready(stopped) = driver.poll(&mut Context::from_waker(waker)) {
            // The task ends the link.
            *stop = Some(stopped);
            waker.wake_by_ref();
        }
    }
}

/// Whose turn it is to poll the driver: one at a time, and nobody waits
/// for it. A handle that finds it taken does without; the driver's task
/// that finds it taken by a handle is woken when the handle is done.
#[derive(Debug, Default)]
struct Turn {
    /// [`FREE`], [`HELD`] or [`AGAIN`].
    state: AtomicU8,
    /// The driver task's waker, left before it sets [`AGAIN`].
    again: Mutex<Option<Waker>>,
}

impl Turn {
    /// A handle's turn, if nobody has it.
    fn try_take(&self) -> Option<Held<'_>> {
        self.state
            .compare_exchange(FREE, HELD, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Held(self))
    }

    /// The driver task's turn; if a handle has it, `waker` is woken once
    /// the handle is done.
    fn take_or_ask(&self, waker: &Waker) -> Option<Held<'_>> {
        let mut seen = FREE;
        loop {
            let want = if seen == FREE {
                HELD
            } else {
                // Left before `AGAIN` is set, so the holder finds it.
                *self.again.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
                AGAIN
            };
            match self
                .state
                .compare_exchange(seen, want, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(FREE) => return Some(Held(self)),
                Ok(_) | Err(AGAIN) => return None,
                // Given back meanwhile, or taken since: look again.
                Err(now) => seen = now,
            }
        }
    }
}

/// A turn taken: given back on drop (a panic in the driver included), so
/// that it is never kept, waking the driver's task if it asked.
#[derive(Debug)]
struct Held<'a>(&'a Turn);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.0.state.swap(FREE, Ordering::AcqRel) == AGAIN {
            let waker = self
                .0
                .again
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_test::task::new_count_waker;

    use super::*;

    #[test]
    fn the_task_that_finds_the_turn_taken_is_woken_once_it_is_given_back() {
        let turn = Turn::default();
        let (task, count) = new_count_waker();
        let woken = || count.get();

        let handle = turn.try_take().expect("free at first");
        assert!(turn.try_take().is_none(), "one turn at a time");
        assert!(turn.take_or_ask(&task).is_none());
        assert!(turn.take_or_ask(&task).is_none(), "asked twice");
        assert_eq!(woken(), 0);
        drop(handle);
        assert_eq!(woken(), 1, "the holder woke the task that asked, once");

        let held = turn.take_or_ask(&task).expect("given back");
        assert!(turn.try_take().is_none(), "a handle does without");
        drop(held);
        assert_eq!(woken(), 1, "nobody asked: nobody woken");
        drop(turn.try_take().expect("free again"));
        assert_eq!(woken(), 1);
    }

    #[test]
    fn a_panic_with_the_turn_gives_it_back() {
        let turn = Turn::default();
        let (task, count) = new_count_waker();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = turn.try_take().unwrap();
            assert!(turn.take_or_ask(&task).is_none());
            panic!("in the driver");
        }));
        assert_eq!(count.get(), 1);
        assert!(turn.take_or_ask(&task).is_some());
    }
}
