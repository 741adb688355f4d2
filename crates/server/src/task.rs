//! The server's side of one connection, on the [`Driver`]: the hello, then
//! the plain or the multiplexed loop. Handlers run on the connection's own
//! task (no spawn per request), and the task that read a request writes its
//! reply.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use enchufe_engine::session::{self, Admit, Flow, Inbound, Role};
use enchufe_framing::mux::{self, ErrorCode, Header, Hello, Kind, Profile};
use enchufe_framing::{Decode, Encode, OutFrame, Wire};
use futures::future::{AbortHandle, Abortable};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, trace, warn};

use crate::driver::{Driver, Event};
use crate::{BusyPolicy, Config, Connection, Disconnect, Error, Handler};
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
    Io: AsyncRead + AsyncWrite + Unpin + crate::driver::Socket,
{
    let config = &ctx.config;
    let mux = conn.profile() == Some(Profile::Multiplexed);
    let mut wire = Wire::new(io, &ctx.framing);
    wire.set_memory_budget(Some(ctx.memory.clone()));
    let mut driver = Driver::new(
        wire,
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
    );
    driver.set_eof_probe(config.eof_keepalive);
    let reason = run(ctx, conn, &mut driver, ready).await;
    if !driver.aborted {
        // A failure is not a goodbye: the client is told so with a reset
        // (which errors do is `Error::ends_with_reset`).
        let failed = matches!(&reason, Disconnect::Error(e) if e.ends_with_reset());
        driver.finish(failed).await;
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
    match run_beside::<false, _, _>(driver, greeting).await {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic))),
        Err(end) => return end,
    }
    driver.take_pushes();
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

/// What a connection's first frame said ([`Profile::Auto`]).
enum Detected {
    /// A multiplexed hello (this frame).
    Hello(BytesMut),
    /// A plain client: its first event (a frame that is not a hello, the
    /// start of a streamed one), or nothing yet: it said nothing within
    /// [`Config::detect_timeout`] (it waits for a greeting, say).
    Plain(Option<Event>),
}

/// [`Profile::Auto`]: waits for the first frame, at most
/// [`Config::detect_timeout`], and tells the profile from it (see
/// [`mux::is_hello`]). Only the first frame is looked at; the loops that
/// follow pay nothing.
async fn detect<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
) -> Result<Detected, Disconnect> {
    let first = async {
        loop {
            match driver.event(true).await {
                Event::Frame(frame) if mux::is_hello(&frame) => return Ok(Detected::Hello(frame)),
                Event::Frame(frame) => {
                    driver.hello_done();
                    return Ok(Detected::Plain(Some(Event::Frame(frame))));
                }
                // Only a plain frame can be over the frame limit.
                Event::Stream(len) => return Ok(Detected::Plain(Some(Event::Stream(len)))),
                Event::Eof => return Err(Disconnect::PeerClosed),
                Event::End(reason) => return Err(reason),
                Event::Signal if driver.stopping => return Err(Disconnect::Shutdown),
                Event::Signal if driver.closing => return Err(closed(conn)),
                Event::Signal => {}
            }
        }
    };
    // `event` keeps its state in the driver, so giving up on it at the
    // window's end loses nothing: the frame still on its way is read next.
    match ctx.config.detect_timeout {
        Some(window) => tokio::time::timeout(window, first)
            .await
            .unwrap_or(Ok(Detected::Plain(None))),
        None => first.await,
    }
}

/// The plain profile's first event, with its first frame checked: a
/// multiplexed hello there is a client of the other profile, closed at once
/// (with [`Mismatch::GotHello`](mux::Mismatch::GotHello)) so that it learns
/// at connect, before any message of it is taken for a request.
async fn first_plain_event<Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
) -> Event {
    loop {
        match driver.event(true).await {
            Event::Frame(frame) if mux::is_hello(&frame) => {
                let mismatch = enchufe_framing::Error::ProfileMismatch(mux::Mismatch::GotHello);
                return Event::End(Disconnect::Error(mismatch.into()));
            }
            Event::Signal if !(driver.closing || driver.stopping) => {}
            event => return event,
        }
    }
}

/// Runs `work` on this task while the driver keeps writing (pushes, pings)
/// and watching its deadlines; takes no frame. With `WATCH` (`work` is a
/// plain request's handler), the socket is watched too: the other end's
/// reset ends the connection and drops `work`, its half-close does not;
/// and a handler that finishes or is cancelled during shutdown is counted
/// in the [`ShutdownReport`](crate::ShutdownReport). `Err` if the
/// connection must end first (aborted, idle, stalled, reset); a close or
/// shutdown only marks the driver, and the work goes on.
async fn run_beside<const WATCH: bool, Io, F>(
    driver: &mut Driver<'_, Io>,
    work: F,
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
        waited = true;
        if WATCH {
            driver.poll_watching_beside(cx).map(Err)
        } else {
            driver.poll_beside(cx).map(Err)
        }
    })
    .await;
    driver.set_busy(false);
    if WATCH && waited {
        count_at_shutdown(driver, out.is_ok());
    }
    out
}

/// A plain handler that waited finished (`done`) or was cancelled: counted
/// if shutdown began meanwhile. Out of line, so that the handler's call
/// (most are ready at once and never come here) stays small enough to be
/// inlined into the connection's loop.
#[cold]
#[inline(never)]
fn count_at_shutdown<Io: AsyncRead + AsyncWrite + Unpin>(driver: &Driver<'_, Io>, done: bool) {
    if done && driver.is_stopping() {
        driver.count(|c| &c.shutdown_answered, 1);
    } else if !done && driver.aborted {
        driver.count(|c| &c.shutdown_cancelled, 1);
    }
}

/// Sends our hello (first, before any push) and reads theirs (or takes
/// `theirs`, already read to tell the profile), within the handshake
/// timeout. Our hello answers theirs on a connection we accepted
/// ([`mux::FLAG_ACCEPTOR`]); on one we dialed, theirs must not be ours sent
/// back.
async fn handshake<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
    mut theirs: Option<BytesMut>,
) -> Result<(), Disconnect> {
    let hello = if ctx.config.peer.is_some() {
        Hello::peer(ctx.config.node_id.clone())
    } else {
        Hello::new(ctx.config.node_id.clone())
    };
    let dialed = conn.is_outbound();
    let hello = if dialed { hello } else { hello.answering() };
    let hello = hello.encode().map_err(|e| Disconnect::Error(e.into()))?;
    // Written even before a hello of another version is refused, so that
    // its sender learns ours.
    driver
        .write(&OutFrame::plain(hello.clone()))
        .map_err(Disconnect::Error)?;
    loop {
        let event = match theirs.take() {
            Some(frame) => Event::Frame(frame),
            None => driver.event(true).await,
        };
        match event {
            Event::Frame(frame) => {
                let mismatch = |how| {
                    let e = enchufe_framing::Error::ProfileMismatch(how);
                    Disconnect::Error(e.into())
                };
                if dialed && frame[..] == hello[..] {
                    return Err(mismatch(mux::Mismatch::Echoed));
                }
                if dialed && !mux::is_hello(&frame) {
                    return Err(mismatch(mux::Mismatch::NotAHello));
                }
                let hello = Hello::decode(&frame).map_err(|e| Disconnect::Error(e.into()))?;
                debug!(node = %hello.node_id, peer = hello.peer, "hello");
                conn.set_remote(hello);
                driver.hello_done();
                if conn.is_peer() {
                    driver.start_keepalive();
                }
                return Ok(());
            }
            // Closed at our hello: what a server pinned to the plain
            // profile does with it.
            Event::Eof if dialed => {
                let e = enchufe_framing::Error::ProfileMismatch(mux::Mismatch::ClosedOnHello);
                return Err(Disconnect::Error(e.into()));
            }
            Event::Eof => return Err(Disconnect::PeerClosed),
            Event::Stream(_) => return Err(not_streamed()),
            Event::End(reason) => return Err(reason),
            Event::Signal if driver.stopping => return Err(Disconnect::Shutdown),
            Event::Signal if driver.closing => return Err(closed(conn)),
            Event::Signal => {}
        }
    }
}

/// The plain profile: one request at a time, replies in request order.
/// `first` is the first event, already read.
async fn plain<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
    mut first: Option<Event>,
) -> Disconnect {
    loop {
        if driver.closing {
            return closed(conn);
        }
        if driver.stopping {
            return Disconnect::Shutdown;
        }
        // Only a check of `first` per frame: it is taken once, then `None`
        // is never written again.
        let event = match first {
            None => driver.event(true).await,
            Some(_) => first.take().expect("checked"),
        };
        let frame = match event {
            Event::Frame(frame) => {
                // The first frame is in: its deadline no longer applies.
                driver.hello_done();
                frame
            }
            Event::Stream(len) => {
                trace!(bytes = len, "streamed request");
                driver.hello_done();
                let limit = ctx.config.handler_timeout;
                let ran = crate::stream::handle(&*ctx.handler, conn, driver, len, limit).await;
                if let Err(reason) = settle(ran).and_then(|reply| write_reply(driver, reply)) {
                    return reason;
                }
                continue;
            }
            Event::Eof => return answer_eof(ctx, conn, driver).await,
            Event::End(reason) => return reason,
            Event::Signal => continue,
        };
        trace!(bytes = frame.len(), "request");
        let request = match H::Request::decode(frame) {
            Ok(request) => request,
            Err(e) => return Disconnect::Error(e.into()),
        };
        let call = AssertUnwindSafe(ctx.handler.handle(request, conn)).catch_unwind();
        // Two arms, so that without a handler timeout the handler's future
        // is not wrapped in a timer's (larger, moved on every call).
        let ran = match ctx.config.handler_timeout {
            None => run_beside::<true, _, _>(driver, call).await,
            Some(limit) => run_beside::<true, _, _>(driver, tokio::time::timeout(limit, call))
                .await
                .and_then(|ran| ran.map_err(|_| Disconnect::Error(Error::HandlerTimeout(limit)))),
        };
        if let Err(reason) = settle(ran).and_then(|reply| write_reply(driver, reply)) {
            return reason;
        }
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
    let answer = match run_beside::<false, _, _>(driver, call).await {
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
        .and_then(|frame| driver.write(&frame));
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
        Ok(body) => driver.write(&OutFrame::plain(body)),
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

/// The multiplexed profile: handlers run concurrently on this task (up to
/// `max_in_flight`, one-way messages included), each reply carries its
/// request's id, a cancel frame drops its handler's future (or a parked
/// request), errors and panics become error replies, and at shutdown every
/// request read and not run is answered `shutting down`.
async fn multiplexed<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
) -> Disconnect {
    let busy = match ctx.config.busy {
        BusyPolicy::Refuse => session::Busy::Refuse,
        _ => session::Busy::Wait,
    };
    let mut mux = Mux {
        ctx,
        conn,
        flow: Flow::new(ctx.config.max_in_flight, busy),
        running: FuturesUnordered::new(),
        cancels: HashMap::new(),
        role: if conn.is_peer() {
            Role::Peer
        } else {
            Role::Server
        },
    };
    let mut draining = false;
    let mut stopped = false;

    loop {
        if driver.stopping && !stopped {
            // Shutdown: nothing new runs; what waited is answered now, and
            // every request read from here on (reading goes on while
            // handlers finish) is answered `shutting down`.
            stopped = true;
            for (id, _) in mux.flow.stop() {
                refuse_shutting_down(driver, id);
            }
        }
        while let Some((id, body)) = mux.flow.next_parked() {
            mux.start(driver, id, body, None);
        }
        if mux.flow.is_idle() {
            if driver.eof {
                return if draining {
                    Disconnect::Closed
                } else {
                    answer_eof(ctx, conn, driver).await
                };
            }
            if driver.stopping {
                // Requests that arrived by now are answered, not left unread.
                while let Some(next) = driver.read_now() {
                    match next {
                        Ok(Some(frame)) => {
                            if let Err(reason) = mux.inbound(driver, frame, None) {
                                return reason;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Disconnect::Error(e.into()),
                    }
                }
                return Disconnect::Shutdown;
            }
        }
        if driver.closing && !draining {
            if !conn.is_draining() {
                return closed(conn);
            }
            // Retired: what is queued goes out, then read on until the other
            // end closes too.
            draining = true;
            driver.finish_writing().await;
        }
        if driver.eof {
            // Half-closed with requests in flight: answered if the client
            // is still there, dropped if it is gone.
            driver.watch_gone();
        }
        let event = std::future::poll_fn(|cx| mux.poll(driver, cx)).await;
        match event {
            // The client is done sending; answer what it asked first.
            Event::Frame(_) | Event::Eof | Event::Signal => {}
            Event::Stream(_) => return not_streamed(),
            Event::End(reason) => {
                if driver.aborted {
                    // The grace period is over: the requests still running
                    // are dropped with `mux`, unanswered.
                    driver.count(|c| &c.shutdown_cancelled, mux.cancels.len() as u64);
                }
                return reason;
            }
        }
    }
}

/// Most frames one poll of the multiplexed loop takes before it yields to
/// the runtime: a client that pipelines without pause cannot hold a worker
/// thread (tokio's budget would stop it too, later).
const FRAMES_PER_POLL: usize = 256;

/// The multiplexed loop's state.
struct Mux<'a, H: Handler> {
    ctx: &'a Ctx<H>,
    conn: &'a Connection,
    flow: Flow<BytesMut>,
    /// Handlers that did not finish on their first poll.
    running: FuturesUnordered<Running<'a, H>>,
    /// Request id -> abort handle, for cancel frames.
    cancels: HashMap<u64, AbortHandle>,
    role: Role,
}

impl<'a, H: Handler> Mux<'a, H> {
    /// Finishes what finished, takes every frame that has arrived (up to
    /// [`FRAMES_PER_POLL`]), and returns when the loop must look at the
    /// driver's state.
    fn poll<Io: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        driver: &mut Driver<'_, Io>,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        for _ in 0..FRAMES_PER_POLL {
            let mut finished = false;
            while let Poll::Ready(Some((id, outcome))) = self.running.poll_next_unpin(cx) {
                if let Some(id) = id {
                    self.cancels.remove(&id);
                    if !matches!(outcome, Outcome::Cancelled) && driver.is_stopping() {
                        driver.count(|c| &c.shutdown_answered, 1);
                    }
                }
                self.flow.finished(id);
                finished = true;
                finish::<H, Io>(driver, id, outcome);
            }
            if finished && (self.flow.parked() > 0 || self.flow.is_idle()) {
                return Poll::Ready(Event::Signal);
            }
            driver.set_busy(!self.flow.is_idle());
            let read = !driver.eof && (driver.stopping || self.flow.can_read());
            match driver.poll_event(cx, read) {
                Poll::Ready(Event::Frame(frame)) => {
                    if let Err(reason) = self.inbound(driver, frame, Some(cx)) {
                        return Poll::Ready(Event::End(reason));
                    }
                    if self.flow.is_idle() && (driver.eof || driver.stopping) {
                        return Poll::Ready(Event::Signal);
                    }
                }
                other => return other,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Acts on one inbound frame.
    fn inbound<Io: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        driver: &mut Driver<'_, Io>,
        frame: BytesMut,
        cx: Option<&mut Context<'_>>,
    ) -> Result<(), Disconnect> {
        let malformed = |v: session::Violation| {
            Disconnect::Error(enchufe_framing::Error::Malformed(v.as_str()).into())
        };
        let (id, body) = match session::classify(frame, self.role).map_err(malformed)? {
            Inbound::Request { id, body } => (Some(id), body),
            Inbound::Notify(body) => (None, body),
            Inbound::Cancel(id) => {
                if self.flow.cancel_parked(id).is_some() {
                    trace!(id, "cancelled before it ran");
                } else if let Some(handle) = self.cancels.remove(&id) {
                    trace!(id, "cancelled");
                    handle.abort();
                }
                return Ok(());
            }
            Inbound::Reply { id, outcome } => {
                let outcome = outcome.map_err(|(code, message)| Error::Remote { code, message });
                self.conn.answer(id, outcome);
                return Ok(());
            }
            Inbound::Ping | Inbound::Push(_) => return Ok(()),
        };
        let (admit, body) = self.flow.admit(id, body);
        match (admit, id, body) {
            (Admit::Run, id, Some(body)) => self.start(driver, id, body, cx),
            (Admit::Park, ..) => {}
            (Admit::Busy, Some(id), _) => {
                let _ = driver.write(&error_frame(
                    id,
                    ErrorCode::Busy,
                    "too many requests in flight",
                ));
            }
            (Admit::ShuttingDown, id, _) => refuse_shutting_down(driver, id),
            // A client's bug, not a reason to drop the request already
            // running under that id: it goes on and gets its own answer.
            (Admit::Duplicate, Some(id), _) => {
                debug!(id, "duplicate request id; refused");
                let _ = driver.write(&error_frame(
                    id,
                    ErrorCode::DuplicateId,
                    "a request with this id is already in flight",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Decodes a request and runs its handler. With a context, the handler
    /// is polled once right here: one that is ready at once (most are) is
    /// answered with no task node, abort handle or wakeup. One that is not
    /// joins `running`, abortable by a cancel. An undecodable request is
    /// answered `bad request` (a one-way message is dropped).
    fn start<Io: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        driver: &mut Driver<'_, Io>,
        id: Option<u64>,
        body: BytesMut,
        cx: Option<&mut Context<'_>>,
    ) {
        let request = match H::Request::decode(body) {
            Ok(request) => request,
            Err(e) => {
                match id {
                    Some(id) => {
                        let _ =
                            driver.write(&error_frame(id, ErrorCode::BadRequest, &e.to_string()));
                    }
                    None => debug!(error = %e, "notify did not decode; dropped"),
                }
                // It never ran: give its place back at once.
                self.flow.finished(id);
                return;
            }
        };
        let (handler, conn) = (&self.ctx.handler, self.conn);
        let limit = self.ctx.config.handler_timeout;
        let mut call: Call<'a, H> = Box::pin(async move {
            let run = async move {
                match id {
                    Some(_) => {
                        AssertUnwindSafe(handler.handle(request, conn))
                            .catch_unwind()
                            .await
                    }
                    None => AssertUnwindSafe(handler.handle_notify(request, conn))
                        .catch_unwind()
                        .await
                        .map(|done| done.map(|()| None)),
                }
            };
            let done = match limit {
                None => Ok(run.await),
                Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| limit),
            };
            match done {
                Ok(Ok(done)) => Outcome::Done(done),
                Ok(Err(panic)) => Outcome::Panicked(panic_message(&*panic)),
                Err(limit) => Outcome::TimedOut(limit),
            }
        });
        if let Some(cx) = cx {
            if let Poll::Ready(outcome) = call.as_mut().poll(cx) {
                self.flow.finished(id);
                finish::<H, Io>(driver, id, outcome);
                return;
            }
        }
        let (handle, registration) = AbortHandle::new_pair();
        if let Some(id) = id {
            self.cancels.insert(id, handle);
        }
        self.running.push(Box::pin(async move {
            match Abortable::new(call, registration).await {
                Ok(outcome) => (id, outcome),
                Err(_aborted) => (id, Outcome::Cancelled),
            }
        }));
    }
}

fn refuse_shutting_down<Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
    id: Option<u64>,
) {
    match id {
        Some(id) => {
            driver.count(|c| &c.shutdown_refused, 1);
            let _ = driver.write(&error_frame(
                id,
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        None => debug!("one-way message dropped: shutting down"),
    }
}

/// One multiplexed handler call, boxed so it can move into `running` after
/// its first poll.
type Call<'a, H> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Outcome<<H as Handler>::Response, <H as Handler>::Error>>
            + Send
            + 'a,
    >,
>;

/// A running multiplexed handler: its request id and how it ended.
type Running<'a, H> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Option<u64>,
                    Outcome<<H as Handler>::Response, <H as Handler>::Error>,
                ),
            > + Send
            + 'a,
    >,
>;

/// Writes the reply (or error reply) of a finished multiplexed handler.
fn finish<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
    id: Option<u64>,
    outcome: Outcome<H::Response, H::Error>,
) {
    let Some(id) = id else {
        // A notify: nothing goes back; failures are only logged.
        match outcome {
            Outcome::Done(Err(e)) => debug!(error = %e, "notify handler failed"),
            Outcome::Panicked(msg) => warn!(panic = %msg, "notify handler panicked"),
            Outcome::TimedOut(limit) => debug!(?limit, "notify handler timed out"),
            _ => {}
        }
        return;
    };
    let frame = match outcome {
        Outcome::Done(Ok(Some(reply))) => match reply.encode() {
            Ok(body) => OutFrame::with_header(
                Header {
                    kind: Kind::Response,
                    id,
                },
                body,
            ),
            Err(e) => error_frame(
                id,
                ErrorCode::Handler,
                &format!("the handler's reply could not be encoded: {e}"),
            ),
        },
        Outcome::Done(Ok(None)) => error_frame(id, ErrorCode::NoReply, "the handler sent no reply"),
        Outcome::Done(Err(e)) => error_frame(id, H::error_code(&e), &e.to_string()),
        Outcome::Panicked(msg) => {
            warn!(id, panic = %msg, "handler panicked; answered with an error");
            error_frame(id, ErrorCode::Panic, &msg)
        }
        Outcome::TimedOut(limit) => error_frame(
            id,
            ErrorCode::Timeout,
            &Error::HandlerTimeout(limit).to_string(),
        ),
        Outcome::Cancelled => return,
    };
    match driver.write(&frame) {
        Ok(()) | Err(Error::Closed) => {}
        // Over the frame limit: the request still gets exactly one answer,
        // which says the framework refused the reply (the handler ran).
        // Its message is cut to fit the limit it reports.
        Err(e) => {
            let room = driver
                .max_frame_length()
                .saturating_sub(mux::HEADER_LEN + 1);
            let message = e.to_string();
            let mut cut = message.len().min(room);
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            let refusal = error_frame(id, ErrorCode::ReplyTooLarge, &message[..cut]);
            let _ = driver.write(&refusal);
        }
    }
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
