//! A server connection on the [connection driver](enchufe_engine::driver):
//! the one loop every role shares moves the bytes and keeps the deadlines;
//! this module adds what only a server's connection has. It drains the
//! connection's outbox (pushes, a peer's requests) into the output while the
//! output holds less than half the byte budget, tells the outbox how much
//! output is held (so pushes see the whole budget), and turns the signal's
//! server bits (close, shutdown, abort) and the driver's failures into the
//! states and [`Disconnect`] reasons the connection task acts on.
//!
//! ```text
//!  Signal (push, close, shutdown, abort) --+
//!  socket <--> framing::Driver --Event--> Driver (this) --Event--> task.rs
//!                     ^                        |
//!                     +--- outbox frames ------+  (below half the budget)
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use enchufe_engine::driver::{self, Deadlines};
use enchufe_engine::Signal;
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};

use std::sync::atomic::AtomicU64;

use crate::outbox::flag;
use crate::stats::Counters;
use crate::{Connection, Disconnect, Error};

/// What the driver reports to the connection task.
#[derive(Debug)]
pub(crate) enum Event {
    /// A complete frame arrived.
    Frame(BytesMut),
    /// The other end closed its writing side between frames.
    Eof,
    /// A streamed frame of this many body bytes began (plain profile with
    /// `max_stream_length`): take it with [`Driver::poll_chunk`].
    Stream(u64),
    /// A signal changed the driver's state (`closing`, `stopping`), or the
    /// output failed: look.
    Signal,
    /// The connection must end now, for this reason.
    End(Disconnect),
}

/// One server connection's driver.
pub(crate) struct Driver<'a, Io> {
    core: driver::Driver<Io, &'a Signal>,
    conn: &'a Connection,
    /// Output held past which no new request is read.
    budget: usize,
    /// What the outbox was last told the driver holds.
    published: usize,
    /// [`Connection::close`] was called.
    pub(crate) closing: bool,
    /// Graceful shutdown began.
    pub(crate) stopping: bool,
    /// The other end closed its writing side.
    pub(crate) eof: bool,
    /// The grace period is over: end without a goodbye.
    pub(crate) aborted: bool,
    /// How to probe the socket once the other end half-closed while work
    /// runs, and how often ([`Config::eof_keepalive`](crate::Config::eof_keepalive));
    /// taken when probing starts.
    probe: Option<(WatchGone<Io>, Duration)>,
    /// Probing: ends with the socket's error if the other end is gone.
    gone: Option<Gone>,
    /// The running plain handler's limit, while its deadline is armed on
    /// the driver's timer ([`Driver::start_handler_deadline`]).
    handler_limit: Option<Duration>,
}

/// [`Socket::watch_gone`] of the connection's I/O.
type WatchGone<Io> = fn(&Io, Duration) -> Option<Gone>;

impl<'a, Io: AsyncRead + AsyncWrite + Unpin> Driver<'a, Io> {
    pub(crate) fn new(
        wire: Wire<Io>,
        conn: &'a Connection,
        budget: usize,
        deadlines: Deadlines,
    ) -> Self {
        #[allow(unused_mut)]
        let mut core = driver::Driver::new(wire, conn.signal(), budget, deadlines);
        #[cfg(feature = "metrics")]
        core.set_meter(enchufe_engine::meter::Meter::new("server"));
        Driver {
            core,
            conn,
            budget,
            published: 0,
            closing: false,
            stopping: false,
            eof: false,
            aborted: false,
            probe: None,
            gone: None,
            handler_limit: None,
        }
    }

    /// A plain handler waits: it must finish within `limit`, or the
    /// connection ends with [`Error::HandlerTimeout`]. On the driver's one
    /// timer: one clock read per handler that waits, none per frame.
    pub(crate) fn start_handler_deadline(&mut self, limit: Duration) {
        self.handler_limit = Some(limit);
        self.core
            .set_deadline(Some(tokio::time::Instant::now() + limit));
    }

    /// The handler finished (or the connection ends): no deadline.
    pub(crate) fn end_handler_deadline(&mut self) {
        if self.handler_limit.take().is_some() {
            self.core.set_deadline(None);
        }
    }

    /// Probes the socket every `every` once the other end half-closed while
    /// work runs ([`Driver::watch_gone`]); `None`: never.
    pub(crate) fn set_eof_probe(&mut self, every: Option<Duration>)
    where
        Io: Socket,
    {
        self.probe = every.map(|every| (Io::watch_gone as WatchGone<Io>, every));
    }

    /// The other end closed its sending side while work runs (a plain
    /// handler, multiplexed requests in flight): start probing the socket,
    /// once, so that a client that is gone ends the connection
    /// ([`Socket::watch_gone`]) while one that only half-closed is answered.
    pub(crate) fn watch_gone(&mut self) {
        if let Some((watch, every)) = self.probe.take() {
            tracing::debug!(?every, "half-closed while busy; probing");
            self.gone = watch(self.core.wire().get_ref(), every);
        }
    }

    /// Whether shutdown began, even if this driver has not looked at its
    /// signal since (an atomic load: not for every frame).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping || self.core.signal().is_raised(flag::SHUTDOWN)
    }

    /// Frames read so far: zero for a connection that has sent nothing.
    pub(crate) fn frames_read(&self) -> u64 {
        self.core.frames_read()
    }

    /// Counts one request in a [`ShutdownReport`](crate::ShutdownReport)
    /// counter.
    pub(crate) fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        Counters::add(counter(self.conn.counters()), n);
    }

    /// Starts keepalive pings (peer links, once the hello says so).
    pub(crate) fn start_keepalive(&mut self) {
        self.core.start_keepalive();
    }

    /// The hello arrived: its deadline no longer applies.
    pub(crate) fn hello_done(&mut self) {
        self.core.hello_done();
    }

    /// The first frame made the connection multiplexed ([`Profile::Auto`](crate::Profile::Auto)):
    /// from now on no frame is streamed (a multiplexed frame's header would
    /// be taken for body).
    pub(crate) fn no_streams(&mut self) {
        self.core.wire_mut().set_max_stream_length(0);
    }

    /// Writes what `on_connect` pushed, now: ahead of the reply to a first
    /// request that may already be read (under `Auto` it always is), so a
    /// greeting comes first, as the handler wrote it.
    pub(crate) fn take_pushes(&mut self) {
        self.take_outbox();
    }

    /// Something runs (a handler): not idleness.
    pub(crate) fn set_busy(&mut self, busy: bool) {
        self.core.set_busy(busy);
    }

    /// Queues a frame for the other end (a reply, an error, a ping).
    ///
    /// # Errors
    /// [`Error::Closed`] once the output failed or was shut down;
    /// [`Error::Framing`] when it is over the frame limit (nothing queued).
    pub(crate) fn write(&mut self, frame: &OutFrame) -> crate::Result<()> {
        if self.core.is_write_done() {
            return Err(Error::Closed);
        }
        self.core.write(frame)?;
        Ok(())
    }

    /// The largest payload this connection reads or writes.
    pub(crate) fn max_frame_length(&self) -> usize {
        self.core.wire().max_frame_length()
    }

    /// Waits for the next event; see [`Driver::poll_event`].
    pub(crate) async fn event(&mut self, read: bool) -> Event {
        std::future::poll_fn(|cx| self.poll_event(cx, read)).await
    }

    /// Moves the I/O forward and reports what needs the task's attention:
    /// a frame (when `read`), the other end's EOF, a signal, or the end.
    #[inline]
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event> {
        match self.core.buffered_frame(read && !self.eof) {
            Some(Ok(frame)) => {
                if self.published != 0 {
                    self.publish();
                }
                Poll::Ready(Event::Frame(frame))
            }
            Some(Err(e)) => Poll::Ready(Event::End(Disconnect::Error(e.into()))),
            None => self.poll_slow::<false>(cx, read),
        }
    }

    /// [`Driver::poll_event`] past its fast path, out of line so the fast
    /// path stays small enough to inline into the connection's loop.
    /// With `WATCH`, nothing is read for the role but the socket is
    /// watched for the other end's reset
    /// ([`poll_watching`](driver::Driver::poll_watching)).
    #[inline(never)]
    fn poll_slow<const WATCH: bool>(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event> {
        loop {
            let polled = if WATCH {
                self.core.poll_watching(cx)
            } else {
                self.core.poll_event(cx, read && !self.eof)
            };
            let event = match polled {
                // The fast path. The outbox hears of output growing when
                // the driver waits or has anything else to say (pushes are
                // admitted on a figure at most one batch old, and reading
                // stops at the budget anyway); of output drained, at once,
                // so pushes waiting for room are not held up by a busy
                // connection.
                Poll::Ready(driver::Event::Frame(frame)) => {
                    if self.published != 0 {
                        self.publish();
                    }
                    return Poll::Ready(Event::Frame(frame));
                }
                Poll::Ready(event) => event,
                Poll::Pending => {
                    self.publish();
                    if let Some(gone) = &mut self.gone {
                        if let Poll::Ready(e) = gone.as_mut().poll(cx) {
                            self.gone = None;
                            let e = enchufe_framing::Error::Io(e);
                            return Poll::Ready(Event::End(Disconnect::Error(e.into())));
                        }
                    }
                    return Poll::Pending;
                }
            };
            self.publish();
            match event {
                driver::Event::Eof => {
                    self.eof = true;
                    return Poll::Ready(Event::Eof);
                }
                driver::Event::Stream(len) => return Poll::Ready(Event::Stream(len)),
                driver::Event::Queued => {
                    self.core.take_queued();
                    self.take_outbox();
                }
                driver::Event::Signal(bits) => {
                    if bits & flag::ABORT != 0 {
                        self.aborted = true;
                        return Poll::Ready(Event::End(Disconnect::Shutdown));
                    }
                    self.closing |= bits & flag::CLOSE != 0;
                    self.stopping |= bits & flag::SHUTDOWN != 0;
                    return Poll::Ready(Event::Signal);
                }
                driver::Event::ReadFailed(e) => {
                    return Poll::Ready(Event::End(Disconnect::Error(e.into())))
                }
                driver::Event::WriteFailed(e) => {
                    tracing::debug!(error = %e, "write failed");
                    self.conn.fail(e.into());
                    return Poll::Ready(Event::Signal);
                }
                // Dropped as a slow consumer: the connection closes with this
                // failure as its reason (pushes waiting for room fail at
                // once), and a running handler may still finish.
                driver::Event::Stalled(after) => self.conn.slow(after),
                driver::Event::IdleTimeout => {
                    return Poll::Ready(Event::End(Disconnect::IdleTimeout))
                }
                driver::Event::HelloTimeout(limit) => {
                    let error = if self.conn.is_plain() {
                        Error::FirstFrameTimeout(limit)
                    } else {
                        Error::HandshakeTimeout(limit)
                    };
                    return Poll::Ready(Event::End(Disconnect::Error(error)));
                }
                driver::Event::FrameTimeout(limit) => {
                    return Poll::Ready(Event::End(Disconnect::Error(Error::FrameTimeout(limit))))
                }
                driver::Event::Deadline => {
                    if let Some(limit) = self.handler_limit.take() {
                        let late = Error::HandlerTimeout(limit);
                        return Poll::Ready(Event::End(Disconnect::Error(late)));
                    }
                }
                // No deadline of the server's own is set.
                _ => {}
            }
        }
    }

    /// Keeps the connection going while something else runs on its task (a
    /// handler): pushes and pings are written and deadlines kept, nothing is
    /// read. `Ready` only when the connection must end; a close or shutdown
    /// only marks the driver.
    pub(crate) fn poll_beside(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect> {
        self.beside::<false>(cx)
    }

    /// [`Driver::poll_beside`] that also watches the socket (plain profile,
    /// a handler runs): a reset or read error ends the connection at once,
    /// so the handler's future is dropped and the slot freed; EOF (the
    /// client's half-close) does not, and is reported once the frames read
    /// before it are taken, so the handler's answer still goes out. At most
    /// [`WATCH_BOUND`](driver::WATCH_BOUND) bytes are read ahead.
    pub(crate) fn poll_watching_beside(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect> {
        self.beside::<true>(cx)
    }

    /// Out of line: only a handler that waits comes here, and the
    /// connection's loop stays small enough for the handler's call to be
    /// inlined into it (instructions per frame, `scripts/callgrind`).
    #[inline(never)]
    fn beside<const WATCH: bool>(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect> {
        loop {
            match self.poll_slow::<WATCH>(cx, false) {
                Poll::Ready(Event::End(reason)) => return Poll::Ready(reason),
                Poll::Ready(_) => continue,
                // Watching saw the other end's EOF: is it still there?
                Poll::Pending
                    if WATCH && self.probe.is_some() && self.core.wire().is_read_closed() =>
                {
                    self.watch_gone();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Takes frames queued by other tasks while the output holds less than
    /// half the budget: the rest wait in the outbox, where a slow consumer's
    /// oldest pushes can still be evicted (`DropOldest`) rather than sit
    /// unreachable in the write buffer.
    fn take_outbox(&mut self) {
        if self.core.is_write_done() {
            return;
        }
        let budget = self.budget / 2;
        let core = &mut self.core;
        self.conn.outbox().drain(|frame| {
            // Frames in the outbox passed the length check when queued.
            let _ = core.write(&frame);
            core.queued() < budget
        });
        self.core.set_waiting(!self.conn.outbox().is_empty());
        self.publish();
    }

    /// Tells the outbox how much output the driver holds, when it changed.
    fn publish(&mut self) {
        let now = self.core.queued();
        if now != self.published {
            self.published = now;
            self.conn.outbox().publish(now);
        }
    }

    /// Sends everything still queued (outbox included), then shuts the
    /// writing side down, within the write timeout. Used at the end, and to
    /// retire a draining peer link (which goes on reading).
    pub(crate) async fn finish_writing(&mut self) {
        if self.core.is_write_done() {
            return;
        }
        self.conn.outbox().close();
        self.budget = usize::MAX;
        self.core.set_budget(usize::MAX);
        self.core.set_waiting(false);
        self.take_outbox();
        match self.core.finish_writing().await {
            Ok(()) => {}
            Err(e) if e.is_timeout() => {
                tracing::warn!(
                    "goodbye write stalled past the write timeout; dropping the connection"
                )
            }
            Err(e) => tracing::debug!(error = %e, "goodbye write failed"),
        }
        self.publish();
    }

    /// The connection's end: a goodbye ([`Driver::finish_writing`]), or,
    /// when it `failed`, a reset. Then what is already queued is flushed
    /// (within the write timeout; pushes still in the outbox are dropped)
    /// and the socket is set to reset when it is dropped ([`Socket`]), so
    /// the other end is told of a failure (`ECONNRESET`, "connection reset
    /// by peer") rather than a goodbye. The writing side is not shut down:
    /// a FIN first would read as a clean close. What the kernel has not
    /// sent by the time the socket is dropped is discarded by the reset.
    ///
    /// One future for both, so the connection's task gains no await point
    /// (one more made the handler's call too big to inline into its loop).
    pub(crate) async fn finish(&mut self, failed: bool)
    where
        Io: Socket,
    {
        if !failed {
            return self.finish_writing().await;
        }
        if let Err(e) = self.core.flush_last().await {
            tracing::debug!(error = %e, "last write before the reset failed");
        }
        self.publish();
        self.core.wire().get_ref().reset_on_drop();
    }

    /// The next chunk of a streamed body; `Ok(None)` at its end.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<enchufe_framing::Result<Option<bytes::Bytes>>> {
        self.core.poll_chunk(cx)
    }

    /// Reads whatever has already arrived, without waiting: at shutdown,
    /// requests sent before it are answered rather than left unread.
    pub(crate) fn read_now(&mut self) -> Option<enchufe_framing::Result<Option<BytesMut>>> {
        self.core.read_now()
    }
}

/// What the server does to a connection's socket beyond reading and
/// writing, where the transport allows: a TCP socket is reset when dropped
/// after a failure (`SO_LINGER` 0: an RST, not a FIN, so the client can
/// tell a crash from a goodbye), and probed once its client half-closed
/// while work runs ([`Socket::watch_gone`]). Other transports do neither
/// and close as usual: a Unix socket (no such signal exists), and TLS or
/// WebSocket streams, which are boxed past reach of their socket.
pub(crate) trait Socket {
    /// Makes dropping this I/O reset the connection, where it can.
    fn reset_on_drop(&self) {}

    /// Turns on keepalive probes `every` so long and returns a future
    /// that ends with the error the socket reports when the other end is
    /// gone (a reset, probes unanswered); `None` where that cannot be done.
    fn watch_gone(&self, every: Duration) -> Option<Gone> {
        let _ = every;
        None
    }
}

/// Ends with the socket's error once the other end is gone.
pub(crate) type Gone = Pin<Box<dyn Future<Output = std::io::Error> + Send>>;

impl Socket for tokio::net::TcpStream {
    fn watch_gone(&self, every: Duration) -> Option<Gone> {
        let socket = socket2::SockRef::from(self);
        // Whole seconds, at least one: the kernel's unit.
        let every = every.max(Duration::from_secs(1));
        let keepalive = socket2::TcpKeepalive::new().with_time(every);
        #[cfg(any(
            target_os = "linux",
            target_os = "android",
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "windows",
        ))]
        let keepalive = keepalive.with_interval(every);
        // A second handle on the same socket, registered on its own, so
        // its error can be awaited while the wire owns the first: after
        // EOF a read only ever says EOF again, a reset or a probe timing
        // out shows only as the socket's error (`EPOLLERR`).
        let watcher = socket
            .set_tcp_keepalive(&keepalive)
            .and_then(|()| socket.try_clone())
            .and_then(|dup| tokio::net::TcpStream::from_std(dup.into()));
        let watcher = match watcher {
            Ok(watcher) => watcher,
            Err(e) => {
                tracing::debug!(error = %e, "cannot probe a half-closed connection");
                return None;
            }
        };
        Some(Box::pin(async move {
            let ready = watcher.ready(tokio::io::Interest::ERROR).await;
            match ready.and_then(|_| watcher.take_error()) {
                Ok(Some(e)) | Err(e) => e,
                Ok(None) => std::io::ErrorKind::ConnectionReset.into(),
            }
        }))
    }

    fn reset_on_drop(&self) {
        // tokio's own `set_linger` is deprecated (a non-zero linger blocks
        // the runtime in close); socket2 sets the same option, and zero
        // never blocks.
        if let Err(e) = socket2::SockRef::from(self).set_linger(Some(std::time::Duration::ZERO)) {
            tracing::debug!(error = %e, "cannot set SO_LINGER; closing instead of resetting");
        }
    }
}

#[cfg(unix)]
impl Socket for tokio::net::UnixStream {}

impl Socket for crate::layer::BoxIo {}
