//! Work run on a connection's task beside its driver: a plain handler (the
//! driver keeps writing and watching the socket), a hook, a multiplexed
//! handler's deadline.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::role::{Driver, Serving};
use crate::Disconnect;

/// Runs `work` on this task while the driver keeps writing (pushes, pings)
/// and watching its deadlines; takes no frame. With `WATCH` (`work` is a
/// plain request's handler), the socket is watched too: the other end's
/// reset ends the connection and drops `work`, its half-close does not;
/// and a handler that finishes or is cancelled during shutdown is counted
/// in the [`ShutdownReport`](crate::ShutdownReport). `Err` if the
/// connection must end first (aborted, idle, stalled, reset, past
/// `limit`: [`Error::HandlerTimeout`]); a close or shutdown only marks the
/// driver, and the work goes on. `limit` is armed on the driver's one
/// timer only if `work` does not finish on its first poll: most handlers
/// answer at once, and a deadline then costs them nothing (wrapping each
/// call in `tokio::time::timeout` read the clock and built a timer entry
/// per request: 666 instructions per 16-byte frame became 895).
pub(super) async fn run_beside<const WATCH: bool, Io, F>(
    driver: &mut Driver<'_, Io>,
    work: F,
    limit: Option<std::time::Duration>,
) -> Result<F::Output, Disconnect>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    F: std::future::Future,
{
    let mut work = pin!(work);
    driver.set_busy(true);
    // Whether the work waited: only then can shutdown have begun while it
    // ran (one ready at once costs no look at the signal).
    let mut waited = false;
    let out = std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if !waited {
            waited = true;
            if let Some(limit) = limit {
                driver.start_handler_deadline(limit);
            }
        }
        if WATCH {
            driver.poll_watching_beside(cx).map(Err)
        } else {
            driver.poll_beside(cx).map(Err)
        }
    })
    .await;
    driver.set_busy(false);
    if waited {
        driver.end_handler_deadline();
    }
    if WATCH && waited {
        count_at_shutdown(driver, out.is_ok());
    }
    out
}

/// `work`, given up past `limit` (`Err(limit)`). The clock is read and a
/// timer armed only if `work` does not finish on its first poll: most
/// handlers answer at once, and a deadline then costs them nothing (the
/// multiplexed profile's handlers, which run side by side and cannot share
/// the driver's one timer as a plain handler does in `run_beside`).
pub(super) async fn within<F: Future>(
    limit: std::time::Duration,
    work: F,
) -> Result<F::Output, std::time::Duration> {
    let mut work = pin!(work);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).map(|()| Err(limit))
    })
    .await
}

/// A plain handler that waited finished (`done`) or was cancelled: counted
/// if shutdown began meanwhile. Out of line, so that the handler's call
/// (most are ready at once and never come here) stays small enough to be
/// inlined into the connection's loop.
#[cold]
#[inline(never)]
fn count_at_shutdown<Io: AsyncRead + AsyncWrite + Unpin>(driver: &Driver<'_, Io>, done: bool) {
    if done && driver.role().is_stopping() {
        driver.role().count(|c| &c.shutdown_answered, 1);
    } else if !done && driver.role().aborted {
        driver.role().count(|c| &c.shutdown_cancelled, 1);
    }
}
