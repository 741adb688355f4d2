//! The server's side of one connection, on the engine's driver with the
//! server's role ([`Driver`]): the hello, then the plain or the multiplexed
//! loop. Handlers run on the connection's own
//! task (no spawn per request), and the task that read a request writes its
//! reply.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | `serve`: one connection from hello to goodbye; work run beside the driver; what both loops share |
//! | `hello.rs` | telling the profile (`Auto`), the first plain frame's check, the hello exchange |
//! | `plain.rs` | the plain loop: one request at a time |
//! | `multiplexed.rs` | the multiplexed loop: handlers concurrently, ids, cancels, shutdown answers |

mod hello;
mod multiplexed;
mod plain;

use hello::{detect, first_plain_event, handshake, Detected};
use multiplexed::multiplexed;
use plain::plain;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use enchufe_framing::mux::{ErrorCode, Header, Kind, Profile};
use enchufe_framing::{Encode, OutFrame, Wire};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::role::{Driver, Serving};
use crate::{Config, Connection, Disconnect, Error, Handler};
use enchufe_engine::driver::Deadlines;

/// What a connection task needs from its server.
pub(crate) struct Ctx<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) config: Config,
    pub(crate) framing: enchufe_framing::Config,
    /// What large frames still arriving may hold, all connections together
    /// ([`Config::max_total_partial_bytes`]).
    pub(crate) memory: enchufe_framing::MemoryBudget,
}

/// Serves one connection until it ends: hello (multiplexed), `on_connect`,
/// the profile's loop, then the goodbye (queued frames flushed and the
/// writing side shut down, within the write timeout). `ready` is answered
/// once the connection is up (dialed connections wait on it). Returns why
/// it ended, and whether the other end never completed a frame (`true`
/// with [`Disconnect::PeerClosed`]: it closed without sending a byte).
pub(crate) async fn serve<H: Handler, Io>(
    ctx: &Ctx<H>,
    conn: &Connection,
    io: Io,
    ready: &mut Option<tokio::sync::oneshot::Sender<crate::Result<Connection>>>,
) -> (Disconnect, bool)
where
    Io: AsyncRead + AsyncWrite + Unpin + crate::role::Socket,
{
    let config = &ctx.config;
    let mux = conn.profile() == Some(Profile::Multiplexed);
    // The wire in a scope of its own: moved into the driver, it would
    // otherwise keep a slot of its own in this future for the connection's
    // whole life.
    let wire = || {
        let mut wire = Wire::new(io, &ctx.framing);
        wire.set_memory_budget(Some(ctx.memory.clone()));
        wire
    };
    let mut driver = crate::role::driver(
        wire(),
        conn,
        config.max_queued_bytes,
        Deadlines {
            idle: config.idle_timeout,
            keepalive: config.peer.as_ref().and_then(|p| p.keepalive),
            write_timeout: Some(config.write_timeout),
            // The multiplexed hello is the first frame; in the plain profile
            // the first request is (`hello_done` once it is read), and under
            // `Auto` whichever comes.
            hello: if mux {
                Some(config.handshake_timeout)
            } else {
                config.first_frame_timeout
            },
            frame: config.frame_timeout,
        },
        config.eof_keepalive,
    );
    let reason = run(ctx, conn, &mut driver, ready).await;
    if !driver.role().aborted {
        // A failure is not a goodbye: the client is told so with a reset
        // (which errors do is `Error::ends_with_reset`).
        let failed = matches!(&reason, Disconnect::Error(e) if e.ends_with_reset());
        crate::role::finish(&mut driver, failed).await;
    }
    (reason, driver.frames_read() == 0)
}

async fn run<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
    ready: &mut Option<tokio::sync::oneshot::Sender<crate::Result<Connection>>>,
) -> Disconnect {
    // What was read to tell the profile (`Auto`): the plain loop's first event.
    let mut first = None;
    match conn.profile() {
        Some(Profile::Multiplexed) => {
            if let Err(reason) = handshake(ctx, conn, driver, None).await {
                return reason;
            }
        }
        Some(_) => {}
        None => match detect(ctx, conn, driver).await {
            Ok(Detected::Hello(hello)) => {
                conn.set_profile(Profile::Multiplexed);
                driver.no_streams();
                if let Err(reason) = handshake(ctx, conn, driver, Some(hello)).await {
                    return reason;
                }
            }
            Ok(Detected::Plain(event)) => {
                conn.set_profile(Profile::Plain);
                first = event;
            }
            Err(reason) => return reason,
        },
    }
    let greeting = AssertUnwindSafe(ctx.handler.on_connect(conn)).catch_unwind();
    match run_beside::<false, _, _>(driver, greeting, None).await {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic))),
        Err(end) => return end,
    }
    driver.fill();
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(conn.clone()));
    }
    match conn.profile() {
        Some(Profile::Multiplexed) => multiplexed(ctx, conn, driver).await,
        _ => {
            let first = match first {
                Some(event) => event,
                None => first_plain_event(driver).await,
            };
            plain(ctx, conn, driver, Some(first)).await
        }
    }
}

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
async fn run_beside<const WATCH: bool, Io, F>(
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
async fn within<F: Future>(
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

/// The client finished sending: [`Handler::on_eof`] may answer before the
/// goodbye (plain: as a reply; multiplexed: as a push).
async fn answer_eof<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
) -> Disconnect {
    let call = AssertUnwindSafe(ctx.handler.on_eof(conn)).catch_unwind();
    let answer = match run_beside::<false, _, _>(driver, call, None).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(panic)) => return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic))),
        Err(reason) => return reason,
    };
    let Some(answer) = answer else {
        return Disconnect::PeerClosed;
    };
    let written = answer
        .encode()
        .map_err(Error::from)
        .and_then(|body| conn.push_frame(body))
        .and_then(|frame| driver.send(&frame));
    match written {
        Ok(()) | Err(Error::Closed) => Disconnect::PeerClosed,
        Err(e) => Disconnect::Error(e),
    }
}

#[inline]
/// What a plain handler's call came to: its reply (if any), or the reason
/// the connection ends (its error or panic, or the connection's own end).
fn settle<R, E: std::fmt::Display + Send + 'static>(
    ran: Result<std::thread::Result<Result<Option<R>, E>>, Disconnect>,
) -> Result<Option<R>, Disconnect> {
    match ran? {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(Disconnect::Error(Error::Handler(crate::HandlerError::new(
            e,
        )))),
        Err(panic) => Err(Disconnect::Error(Error::HandlerPanic(panic_message(
            &*panic,
        )))),
    }
}

#[inline]
/// Writes a plain reply, if there is one. One that cannot be written ends
/// the connection: the plain wire has no other way to say so.
fn write_reply<R: Encode, Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
    reply: Option<R>,
) -> Result<(), Disconnect> {
    let Some(reply) = reply else {
        return Ok(());
    };
    let written = match reply.encode() {
        Ok(body) => driver.send(&OutFrame::plain(body)),
        Err(e) => Err(e.into()),
    };
    match written {
        // The write side already failed: the loop finds out why.
        Ok(()) | Err(Error::Closed) => Ok(()),
        Err(e) => Err(Disconnect::Error(e)),
    }
}

/// How one multiplexed handler call ended.
enum Outcome<R, E> {
    Done(Result<Option<R>, E>),
    Panicked(String),
    TimedOut(std::time::Duration),
    Cancelled,
}

fn error_frame(id: u64, code: ErrorCode, message: &str) -> OutFrame {
    OutFrame::with_header(
        Header {
            kind: Kind::Error,
            id,
        },
        code.body(message),
    )
}

/// A stream where none can be (a multiplexed connection never turns them
/// on): the connection cannot go on.
fn not_streamed() -> Disconnect {
    Disconnect::Error(Error::Unsupported(
        "a streamed frame on a connection that does not take them",
    ))
}

fn closed(conn: &Connection) -> Disconnect {
    conn.take_failure()
        .map_or(Disconnect::Closed, Disconnect::Error)
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
