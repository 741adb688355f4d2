//! The handler's run on the connection's task: panics caught, its
//! deadline on the driver's timer, its body read only while it waits.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::config::Config;
use super::pump::Pump;
use super::role::{Cut, Driver, Event};
use crate::{Handler, Request, Response};

/// What a handler's run came to.
pub(super) enum Outcome {
    /// Its reply.
    Reply(Response),
    /// It panicked: `500`, and the connection closes.
    Panicked,
    /// [`Config::handler_timeout`] passed: `503`.
    TimedOut,
    /// The connection cannot go on (its output failed or stalled): nothing
    /// can be sent any more.
    Ended,
}

/// Runs the handler on this task while the driver keeps the connection:
/// earlier replies are flushed, the write deadline is kept, the idle
/// timeout waits (the driver is busy) unless the handler waits for its
/// body, and nothing is read but that body (pipelined heads stay in the
/// wire's bounded buffer until their turn). The handler's deadline is the
/// driver's own (`Driver::set_deadline`), on the connection's one timer,
/// armed from the handler's first wait: a handler that answers in its
/// first poll (or a run without a timeout) arms nothing and reads no
/// clock.
pub(super) async fn run_handler<Io, H>(
    handler: &H,
    request: Request,
    driver: &mut Driver<Io>,
    mut pump: Option<&mut Pump>,
    config: &Config,
) -> Outcome
where
    Io: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let timeout = config.handler_timeout;
    // A closure may panic before it returns its future, or the future when
    // polled: both answer `500`. Unwind safety: on a panic the future is
    // dropped and the connection closed, so no state it left half-changed
    // is used again by this connection.
    let call = match catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
        Ok(call) => call,
        Err(panic) => {
            tracing::warn!(panic = panic_message(&*panic), "HTTP handler panicked");
            return Outcome::Panicked;
        }
    };
    let mut call = pin!(call);
    let mut armed = false;
    driver.set_busy(true);
    let outcome = std::future::poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
            Ok(Poll::Ready(reply)) => return Poll::Ready(Outcome::Reply(reply)),
            Ok(Poll::Pending) => {}
            Err(panic) => {
                tracing::warn!(panic = panic_message(&*panic), "HTTP handler panicked");
                return Poll::Ready(Outcome::Panicked);
            }
        }
        // The deadline starts when the handler first waits: one that
        // answers in its first poll reads no clock and arms no timer.
        if let (Some(limit), false) = (timeout, armed) {
            driver.set_deadline(Some(Instant::now() + limit));
            armed = true;
        }
        loop {
            // The body is read only while the handler wants it; a body that
            // stops arriving meanwhile is bounded by the idle timeout.
            let read = pump.as_deref_mut().is_some_and(|p| p.read(driver));
            driver.set_busy(!read);
            match driver.poll_event(cx, read) {
                Poll::Ready(Event::Deadline) => {
                    tracing::warn!(limit = ?timeout.unwrap_or_default(), "HTTP handler timed out");
                    return Poll::Ready(Outcome::TimedOut);
                }
                Poll::Ready(Event::End(Cut::Output)) => return Poll::Ready(Outcome::Ended),
                Poll::Ready(event) => {
                    let Some(pump) = pump.as_deref_mut() else {
                        // Nothing else can come while not reading (no
                        // signal bits are used).
                        continue;
                    };
                    if pump.event(event) {
                        // The handler may read it now.
                        return match catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
                            Ok(Poll::Ready(reply)) => Poll::Ready(Outcome::Reply(reply)),
                            Ok(Poll::Pending) => continue,
                            Err(panic) => {
                                tracing::warn!(
                                    panic = panic_message(&*panic),
                                    "HTTP handler panicked"
                                );
                                Poll::Ready(Outcome::Panicked)
                            }
                        };
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    driver.set_busy(false);
    if armed {
        driver.set_deadline(None);
    }
    outcome
}

/// A panic's message, when it is a string.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}
