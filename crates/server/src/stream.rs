//! A streamed frame's body on a plain connection: this task feeds the body's
//! chunks from the wire to the handler's [`Body`] (a few at a time) while the
//! handler runs, goes on writing and watching deadlines, and skips whatever
//! the handler leaves unread, so the next frame starts where it should.
//!
//! ```text
//!   wire --poll_chunk--> [BodySender: 4 chunks] --> Body --> handle_stream
//!        (skipped to its end if the Body is dropped early)
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use enchufe_framing::{Body, BoxError, Error as FramingError};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::PollSender;

use crate::role::{Driver, Serving};
use crate::{Connection, Disconnect, Handler};

/// What a handler's call on a stream came to: its reply or error, or its
/// panic.
pub(crate) type Outcome<R> = std::thread::Result<Result<Option<R>, BoxError>>;

/// Runs [`Handler::handle_stream`] on a body of `len` bytes. `Err` if the
/// connection must end first (the body was cut, aborted, idle, stalled).
/// `limit` ([`Config::handler_timeout`](crate::Config::handler_timeout))
/// counts from each chunk the handler takes and from the body's end, so
/// an upload of any size may take its time while the handler reads it.
pub(crate) async fn handle<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    handler: &H,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
    len: u64,
    limit: Option<std::time::Duration>,
) -> Result<Outcome<H::Response>, Disconnect> {
    let (tx, body) = Body::channel(len);
    let call = AssertUnwindSafe(handler.handle_stream(body, conn)).catch_unwind();
    run(driver, PollSender::new(tx), call, limit).await
}

async fn run<Io, R, F>(
    driver: &mut Driver<'_, Io>,
    tx: PollSender<enchufe_framing::Result<bytes::Bytes>>,
    work: F,
    limit: Option<Duration>,
) -> Result<Outcome<R>, Disconnect>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = Outcome<R>>,
{
    let mut work = pin!(work);
    let mut tx = Some(tx);
    let mut body_done = false;
    let mut out: Option<Outcome<R>> = None;
    // One timer, moved on per chunk taken (a clock read per 64 KiB chunk).
    let mut deadline = limit.map(|limit| Box::pin(tokio::time::sleep(limit)));
    driver.set_busy(true);
    let result = std::future::poll_fn(|cx| loop {
        // Feed the body while its reader has room; once it is gone (the
        // handler dropped it, or returned), skip to the body's end.
        while !body_done {
            if let Some(sender) = tx.as_mut() {
                match sender.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => {
                        tx = None;
                        continue;
                    }
                    Poll::Pending => break,
                }
            }
            match driver.poll_chunk(cx) {
                Poll::Ready(Ok(Some(chunk))) => {
                    if let Some(sender) = tx.as_mut() {
                        let _ = sender.send_item(Ok(chunk));
                        if let (Some(deadline), Some(limit)) = (&mut deadline, limit) {
                            deadline.as_mut().reset(Instant::now() + limit);
                        }
                    }
                }
                Poll::Ready(Ok(None)) => {
                    body_done = true;
                    // The end: the reader sees it once every chunk is read.
                    tx = None;
                }
                Poll::Ready(Err(e)) => {
                    if let Some(sender) = tx.as_mut() {
                        let _ = sender.send_item(Err(shared(&e)));
                    }
                    return Poll::Ready(Err(Disconnect::Error(e.into())));
                }
                Poll::Pending => break,
            }
        }
        if out.is_none() {
            if let Poll::Ready(outcome) = work.as_mut().poll(cx) {
                // A reply waits for the rest of the body to be skipped; a
                // failure ends the connection, skipping nothing.
                if !matches!(outcome, Ok(Ok(_))) {
                    return Poll::Ready(Ok(outcome));
                }
                out = Some(outcome);
                tx = None;
                continue;
            }
        }
        if body_done {
            if let Some(outcome) = out.take() {
                return Poll::Ready(Ok(outcome));
            }
        }
        if out.is_none() {
            if let (Some(deadline), Some(limit)) = (&mut deadline, limit) {
                if deadline.as_mut().poll(cx).is_ready() {
                    let late = crate::Error::HandlerTimeout(limit);
                    return Poll::Ready(Ok(Ok(Err(late.into()))));
                }
            }
        }
        // Meanwhile: pushes and pings go out, deadlines are kept.
        return driver.poll_beside(cx).map(Err);
    })
    .await;
    driver.set_busy(false);
    result
}

/// The body's reader is told the same failure as the connection.
fn shared(e: &FramingError) -> FramingError {
    match e {
        FramingError::UnexpectedEof { expected, received } => FramingError::UnexpectedEof {
            expected: *expected,
            received: *received,
        },
        other => FramingError::Io(std::io::Error::other(other.to_string())),
    }
}
