//! One connection's loop: heads in, one request answered at a time,
//! the rest of an unread body drained, refusals answered and lingered on.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use bytes::{Bytes, BytesMut};
use enchufe_engine::driver::Deadlines;
use enchufe_engine::Signal;
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::call::{run_handler, Outcome};
use super::config::Config;
use super::pump::Pump;
use super::role::{Cut, Driver, Event, HttpRole, STOP};
use super::stream::{send_stream, Streaming};
use crate::date::Date;
use crate::request::Layout;
use crate::rules::Framing;
use crate::{Body, Handler, Refusal, Request, RequestHead, Response};

/// The `Date` line is re-read from the clock for the first reply of each
/// batch (nothing queued yet) and at least every this many replies, so a
/// batch of pipelined replies reads the clock once, and a client that
/// keeps the output from emptying still gets a date at most this many
/// replies old.
const DATE_EVERY: u32 = 16;

/// What a connection keeps between its replies.
#[derive(Debug, Default)]
struct Replies {
    /// The `Date` line of this batch.
    date: Date,
    /// Replies since the date was read.
    dated: u32,
    /// Where reply heads are written before they are queued: its memory
    /// comes back once the queued copy is made, so a head costs no
    /// allocation.
    scratch: BytesMut,
}

/// Raises [`STOP`] on the connection's signal when the server's shutdown
/// token is cancelled: the cancellation future is polled once, with this
/// as its waker, so the driver learns of shutdown from the flag it loads
/// anyway, instead of a future polled beside every request.
struct StopWaker(Arc<Signal>);

impl Wake for StopWaker {
    fn wake(self: Arc<Self>) {
        self.0.raise(STOP);
    }
}

/// How a connection ends.
enum End {
    /// Close after flushing what is queued.
    Close,
    /// Reply with this status (a refusal), then close.
    Refuse(u16),
}

/// One connection: the driver reads heads through [`RequestHead`], the
/// handler answers (one request at a time, so replies keep request order),
/// the driver writes and flushes. Generic over the I/O for the tests.
pub(super) async fn serve<Io, H>(stream: Io, handler: &H, config: &Config, stop: &CancellationToken)
where
    Io: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let signal = Arc::new(Signal::default());
    let framing = enchufe_framing::Config::default().max_frame_length(config.max_response);
    let wire = Wire::with_split(stream, &framing, RequestHead::new(config.limits));
    let deadlines = Deadlines {
        idle: Some(config.idle_timeout),
        write_timeout: Some(config.write_timeout),
        frame: Some(config.head_timeout),
        // The first request's head must begin and end within the head
        // timeout: a connection that sends nothing holds a socket and a
        // permit, and is refused (408) as a trickled head is.
        hello: Some(config.head_timeout),
        ..Deadlines::default()
    };
    let mut driver = Driver::with_role(
        wire,
        signal.clone(),
        config.output_budget,
        deadlines,
        HttpRole,
    );
    // Kept (pinned) while the connection lives: dropping it would take its
    // waker off the token's list.
    let mut stopped = pin!(stop.cancelled());
    let waker = Waker::from(Arc::new(StopWaker(signal.clone())));
    if stopped
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready()
    {
        signal.raise(STOP);
    }
    let mut replies = Replies::default();
    // Body bytes still allowed to be read and dropped, while the rest of a
    // body the handler left unread is skipped.
    let mut draining: Option<u64> = None;
    let end = loop {
        match driver.event(true).await {
            // Shutdown: no further request is read.
            Event::Signal(_) => break End::Close,
            Event::Frame(rest) if draining.is_some() => {
                if !driver.wire().split().in_body() {
                    draining = None;
                    continue;
                }
                match draining.and_then(|left| left.checked_sub(rest.len() as u64)) {
                    Some(left) => draining = Some(left),
                    None => break End::Close,
                }
            }
            Event::Frame(head) => {
                driver.hello_done();
                match answer(head, handler, &mut driver, config, &mut replies).await {
                    Ok(After::KeepAlive) => {}
                    Ok(After::Drain) => draining = Some(config.drain_bytes),
                    Ok(After::Close) => break End::Close,
                    Err(status) => break End::Refuse(status),
                }
            }
            // A broken rest of a body already answered: no second reply.
            Event::End(Cut::Read { .. }) if draining.is_some() => break End::Close,
            Event::End(Cut::Read { error, refusal }) => match refusal {
                Some(status) => {
                    tracing::debug!(%error, "request head refused");
                    break End::Refuse(status);
                }
                None => {
                    tracing::debug!(%error, "connection read failed");
                    break End::Close;
                }
            },
            Event::End(Cut::Late) => break End::Refuse(408),
            Event::Eof | Event::End(Cut::Idle | Cut::Output) => break End::Close,
            // No streams or queue here; our one deadline (the handler's) is
            // cleared before we read again.
            _ => {}
        }
    };
    if let End::Refuse(status) = end {
        let reply = Response::text(status, format!("{status}\n"));
        let _ = driver.write(&OutFrame::plain(reply.encode(1, false, false)));
    }
    let _ = driver.finish_writing().await;
    if matches!(end, End::Refuse(_)) {
        linger(driver.wire_mut().get_mut(), config).await;
    }
}

/// What follows a reply.
enum After {
    /// The next request.
    KeepAlive,
    /// The rest of the body the handler left unread, then the next request.
    Drain,
    /// Nothing: close after flushing.
    Close,
}

/// Answers one request: what follows it, or `Err(status)` to refuse and
/// close.
async fn answer<Io, H>(
    head: BytesMut,
    handler: &H,
    driver: &mut Driver<Io>,
    config: &Config,
    replies: &mut Replies,
) -> Result<After, u16>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    // The codec parsed and checked the head as it cut it; a head it did
    // not lay out (none is expected) is parsed here.
    let layout = match driver.wire_mut().split_mut().take_layout() {
        Some(layout) => layout,
        None => Layout::parse(&head).map_err(|refusal| {
            tracing::debug!(?refusal, "request refused");
            refusal.status()
        })?,
    };
    let len = match layout.framing {
        Framing::Length(0) => None,
        Framing::Length(n) if n > config.max_body => return Err(Refusal::BodyTooLarge.status()),
        Framing::Length(n) => Some(Some(n)),
        Framing::Chunked => Some(None),
    };
    // The handler takes the request: what the reply's framing needs is
    // kept aside.
    let (version, head_only) = (layout.version, layout.head_only);
    let (asked_keep_alive, expect) = (layout.keep_alive, layout.expect);
    let mut request = Request::new(head.freeze(), layout);
    let mut pump = len.map(|len| {
        driver
            .wire_mut()
            .split_mut()
            .start_body(len, config.max_body);
        let (tx, body) = Body::channel(len);
        request.body = body;
        Pump {
            tx: Some(tx),
            expect,
            ended: false,
            failed: None,
            cut: false,
        }
    });
    let outcome = run_handler(handler, request, driver, pump.as_mut(), config).await;
    if let Some(status) = pump.as_ref().and_then(|p| p.failed) {
        return Err(status);
    }
    let mut reply = match outcome {
        Outcome::Reply(reply) => reply,
        Outcome::TimedOut => Response::text(503, "503: the handler took too long\n"),
        Outcome::Panicked => return Err(500),
        Outcome::Ended => return Ok(After::Close),
    };
    // Shutdown began (before or while the handler ran): this reply is the
    // last, and says so. HTTP/1.0 has no chunked: a streamed body of
    // unknown length ends with the connection.
    let open = asked_keep_alive
        && !driver.signal().is_raised(STOP)
        && (version >= 1 || reply.stream.as_ref().is_none_or(|s| s.len.is_some()));
    let stream = reply.stream.as_ref().filter(|_| !head_only).is_some();
    // A streamed reply may read the body while it is written: what follows
    // is known after it.
    let after = if stream {
        open_after(open)
    } else {
        after_body(open_after(open), pump.as_ref(), driver, config)
    };
    let keep_alive = !matches!(after, After::Close);
    if driver.queued() == 0 || replies.dated >= DATE_EVERY {
        replies.date.refresh();
        replies.dated = 0;
    }
    replies.dated += 1;
    reply.encode_head(&mut replies.scratch, version, keep_alive, &replies.date);
    let head = replies.scratch.split().freeze();
    let Some(chunks) = reply.stream.take().filter(|_| !head_only) else {
        let body = if head_only {
            Bytes::new()
        } else {
            std::mem::take(&mut reply.body)
        };
        // The head is copied into the output (the scratch's memory comes
        // back); the body joins it, copied if small, by reference if not.
        if head.len() + body.len() > config.max_response
            || driver.write(&OutFrame::plain(head)).is_err()
        {
            tracing::warn!(status = reply.status, "reply over max_response");
            return Err(500);
        }
        if !body.is_empty() {
            driver.write_chunk(&body);
        }
        return Ok(after);
    };
    let chunked = chunks.len.is_none() && version >= 1;
    match send_stream(driver, pump.as_mut(), head, chunks, chunked, config).await {
        Ok(()) => Ok(after_body(after, pump.as_ref(), driver, config)),
        Err(Streaming::BeforeHead) => Err(500),
        Err(Streaming::Cut) => Ok(After::Close),
    }
}

/// What follows a reply before looking at the body.
fn open_after(open: bool) -> After {
    if open {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// What follows a reply given the request body's state: a body the handler
/// left unread is drained after it, unless its client waits for `100
/// Continue` (it may never send it), the connection broke, or a declared
/// rest is over [`Config::drain_bytes`] (known now, so the reply says the
/// connection closes; a chunked rest is measured as it comes).
fn after_body<Io>(after: After, pump: Option<&Pump>, driver: &Driver<Io>, config: &Config) -> After
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let Some(pump) = pump else { return after };
    if pump.cut || pump.expect {
        return After::Close;
    }
    if pump.ended || !matches!(after, After::KeepAlive) {
        return after;
    }
    let left = driver.wire().split().body_left();
    if left.is_some_and(|left| left > config.drain_bytes) {
        After::Close
    } else {
        After::Drain
    }
}

/// Reads and drops what the client still sends after a refusal, bounded
/// in time and bytes (see [`Config::linger`]).
async fn linger(io: &mut (impl AsyncRead + Unpin), config: &Config) {
    let mut left = config.linger_bytes;
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(config.linger, async {
        while left > 0 {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
