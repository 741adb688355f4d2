//! The server's role on the [connection driver](enchufe_engine::driver):
//! the one loop every role shares moves the bytes and keeps the deadlines,
//! and calls [`ServerRole`]'s hooks ([`Role`]) for what only a server's
//! connection has. It drains the connection's outbox (pushes, a peer's
//! requests) into the output while the output holds less than half the
//! byte budget, tells the outbox how much output is held (so pushes see
//! the whole budget), turns the signal's server bits (close, shutdown,
//! abort) into the role's state, the driver's failures into the
//! [`Disconnect`] reasons the connection task acts on, and probes a
//! half-closed socket for a client that is gone.
//!
//! ```text
//!  Signal (push, close, shutdown, abort) --+
//!  socket <--> engine Driver --Event--> task/ (hello, plain, multiplexed)
//!                 |      ^
//!          hooks  v      |  outbox frames (below half the budget)
//!               ServerRole (this) -- Disconnect reasons, closing/stopping
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use enchufe_engine::driver::{self, Deadlines, QUEUED};
use enchufe_engine::role::{Failure, Output, Role};
use enchufe_engine::Signal;
use enchufe_framing::{LengthPrefix, OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};

use std::sync::atomic::AtomicU64;

use crate::outbox::flag;
use crate::stats::Counters;
use crate::{Connection, Disconnect, Error};

/// One server connection's driver: the engine's, with the server's role.
pub(crate) type Driver<'a, Io> = driver::Driver<Io, &'a Signal, LengthPrefix, ServerRole<'a, Io>>;

/// What the connection's loops get from the driver: the engine's one
/// event, ending with a [`Disconnect`] reason.
pub(crate) type Event = driver::Event<Disconnect>;

/// What a server's connection adds to the driver; see the [module](self).
pub(crate) struct ServerRole<'a, Io> {
    conn: &'a Connection,
    /// What the outbox was last told the driver holds.
    published: usize,
    /// [`Connection::close`] was called.
    pub(crate) closing: bool,
    /// Graceful shutdown began.
    pub(crate) stopping: bool,
    /// The grace period is over: end without a goodbye.
    pub(crate) aborted: bool,
    /// How to probe the socket once the other end half-closed while work
    /// runs, and how often ([`Config::eof_keepalive`](crate::Config::eof_keepalive));
    /// taken when probing starts.
    probe: Option<(WatchGone<Io>, Duration)>,
    /// Probing: ends with the socket's error if the other end is gone.
    gone: Option<Gone>,
    /// The running plain handler's limit, while its deadline is armed on
    /// the driver's timer ([`Serving::start_handler_deadline`]).
    handler_limit: Option<Duration>,
}

/// [`Socket::watch_gone`] of the connection's I/O.
type WatchGone<Io> = fn(&Io, Duration) -> Option<Gone>;

/// A driver for `conn` over `wire`, stopping reads at `budget` bytes of
/// output, probing a half-closed socket every `eof_probe` (`None`: never).
pub(crate) fn driver<'a, Io>(
    wire: Wire<Io>,
    conn: &'a Connection,
    budget: usize,
    deadlines: Deadlines,
    eof_probe: Option<Duration>,
) -> Driver<'a, Io>
where
    Io: AsyncRead + AsyncWrite + Unpin + Socket,
{
    let role = ServerRole {
        conn,
        published: 0,
        closing: false,
        stopping: false,
        aborted: false,
        probe: eof_probe.map(|every| (Io::watch_gone as WatchGone<Io>, every)),
        gone: None,
        handler_limit: None,
    };
    #[allow(unused_mut)]
    let mut driver = driver::Driver::with_role(wire, conn.signal(), budget, deadlines, role);
    #[cfg(feature = "metrics")]
    driver.set_meter(enchufe_engine::meter::Meter::new("server"));
    driver
}

impl<Io> ServerRole<'_, Io> {
    /// Tells the outbox how much output the driver holds, when it changed.
    #[inline]
    fn publish(&mut self, now: usize) {
        if now != self.published {
            self.published = now;
            self.conn.outbox().publish(now);
        }
    }

    /// Counts one request in a [`ShutdownReport`](crate::ShutdownReport)
    /// counter.
    pub(crate) fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        Counters::add(counter(self.conn.counters()), n);
    }

    /// Whether shutdown began, even if the driver has not looked at its
    /// signal since (an atomic load: not for every frame).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping || self.conn.signal().is_raised(flag::SHUTDOWN)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> ServerRole<'_, Io> {
    /// Takes frames queued by other tasks while the output holds less than
    /// half the budget: the rest wait in the outbox, where a slow consumer's
    /// oldest pushes can still be evicted (`DropOldest`) rather than sit
    /// unreachable in the write buffer.
    fn take_outbox(&mut self, out: &mut Output<'_, Io, LengthPrefix>) {
        if out.is_done() {
            return;
        }
        let budget = out.budget() / 2;
        self.conn.outbox().drain(|frame| {
            // Frames in the outbox passed the length check when queued.
            let _ = out.write(&frame);
            out.queued() < budget
        });
        out.set_waiting(!self.conn.outbox().is_empty());
        self.publish(out.queued());
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Role<Io, LengthPrefix> for ServerRole<'_, Io> {
    type End = Disconnect;

    /// The fast path. The outbox hears of output growing when the driver
    /// waits or has anything else to say (pushes are admitted on a figure
    /// at most one batch old, and reading stops at the budget anyway); of
    /// output drained, at once, so pushes waiting for room are not held up
    /// by a busy connection.
    #[inline(always)]
    fn on_frame(&mut self, out: &mut Output<'_, Io, LengthPrefix>) {
        if self.published != 0 {
            self.publish(out.queued());
        }
    }

    fn on_eof(&mut self, out: &mut Output<'_, Io, LengthPrefix>) -> Option<Event> {
        self.publish(out.queued());
        Some(Event::Eof)
    }

    fn on_stream(&mut self, len: u64, out: &mut Output<'_, Io, LengthPrefix>) -> Option<Event> {
        self.publish(out.queued());
        Some(Event::Stream(len))
    }

    fn on_queued(&mut self, out: &mut Output<'_, Io, LengthPrefix>) -> Option<Event> {
        self.publish(out.queued());
        self.conn.signal().take(QUEUED);
        self.take_outbox(out);
        None
    }

    fn on_signal(&mut self, bits: u8, out: &mut Output<'_, Io, LengthPrefix>) -> Option<Event> {
        self.publish(out.queued());
        if bits & flag::ABORT != 0 {
            self.aborted = true;
            return Some(Event::End(Disconnect::Shutdown));
        }
        self.closing |= bits & flag::CLOSE != 0;
        self.stopping |= bits & flag::SHUTDOWN != 0;
        Some(Event::Signal(bits))
    }

    fn on_deadline(&mut self, out: &mut Output<'_, Io, LengthPrefix>) -> Option<Event> {
        self.publish(out.queued());
        // The server's one deadline of its own: a plain handler's.
        let limit = self.handler_limit.take()?;
        Some(Event::End(Disconnect::Error(Error::HandlerTimeout(limit))))
    }

    fn on_failure(
        &mut self,
        failure: Failure,
        out: &mut Output<'_, Io, LengthPrefix>,
    ) -> Option<Event> {
        self.publish(out.queued());
        let error = match failure {
            Failure::ReadFailed(e) => e.into(),
            Failure::WriteFailed(e) => {
                tracing::debug!(error = %e, "write failed");
                self.conn.fail(e.into());
                // The connection closes: the loop looks at its state.
                return Some(Event::Signal(0));
            }
            // Dropped as a slow consumer: the connection closes with this
            // failure as its reason (pushes waiting for room fail at
            // once), and a running handler may still finish.
            Failure::Stalled(after) => {
                self.conn.slow(after);
                return None;
            }
            Failure::IdleTimeout => return Some(Event::End(Disconnect::IdleTimeout)),
            Failure::HelloTimeout(limit) if self.conn.is_plain() => Error::FirstFrameTimeout(limit),
            Failure::HelloTimeout(limit) => Error::HandshakeTimeout(limit),
            Failure::FrameTimeout(limit) => Error::FrameTimeout(limit),
        };
        Some(Event::End(Disconnect::Error(error)))
    }

    #[inline]
    fn poll_wait(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<'_, Io, LengthPrefix>,
    ) -> Poll<Disconnect> {
        self.publish(out.queued());
        if let Some(gone) = &mut self.gone {
            if let Poll::Ready(e) = gone.as_mut().poll(cx) {
                self.gone = None;
                let e = enchufe_framing::Error::Io(e);
                return Poll::Ready(Disconnect::Error(e.into()));
            }
        }
        Poll::Pending
    }
}

/// What the connection's task asks of its driver beyond the engine's own
/// methods: the server role's state and the acts that need both.
pub(crate) trait Serving {
    /// A plain handler waits: it must finish within `limit`, or the
    /// connection ends with [`Error::HandlerTimeout`]. On the driver's one
    /// timer: one clock read per handler that waits, none per frame.
    fn start_handler_deadline(&mut self, limit: Duration);

    /// The handler finished (or the connection ends): no deadline.
    fn end_handler_deadline(&mut self);

    /// The other end closed its sending side while work runs (a plain
    /// handler, multiplexed requests in flight): start probing the socket,
    /// once, so that a client that is gone ends the connection
    /// ([`Socket::watch_gone`]) while one that only half-closed is answered.
    fn watch_gone(&mut self);

    /// The first frame made the connection multiplexed ([`Profile::Auto`](crate::Profile::Auto)):
    /// from now on no frame is streamed (a multiplexed frame's header would
    /// be taken for body).
    fn no_streams(&mut self);

    /// Queues a frame for the other end (a reply, an error, a ping).
    ///
    /// # Errors
    /// [`Error::Closed`] once the output failed or was shut down;
    /// [`Error::Framing`] when it is over the frame limit (nothing queued).
    fn send(&mut self, frame: &OutFrame) -> crate::Result<()>;

    /// The largest payload this connection reads or writes.
    fn max_frame_length(&self) -> usize;

    /// Keeps the connection going while something else runs on its task (a
    /// handler): pushes and pings are written and deadlines kept, nothing is
    /// read. `Ready` only when the connection must end; a close or shutdown
    /// only marks the role.
    fn poll_beside(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect>;

    /// [`Serving::poll_beside`] that also watches the socket (plain
    /// profile, a handler runs): a reset or read error ends the connection
    /// at once, so the handler's future is dropped and the slot freed; EOF
    /// (the client's half-close) does not, and is reported once the frames
    /// read before it are taken, so the handler's answer still goes out. At
    /// most [`WATCH_BOUND`](driver::WATCH_BOUND) bytes are read ahead.
    fn poll_watching_beside(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect>;
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Serving for Driver<'_, Io> {
    fn start_handler_deadline(&mut self, limit: Duration) {
        self.role_mut().handler_limit = Some(limit);
        self.set_deadline(Some(tokio::time::Instant::now() + limit));
    }

    fn end_handler_deadline(&mut self) {
        if self.role_mut().handler_limit.take().is_some() {
            self.set_deadline(None);
        }
    }

    fn watch_gone(&mut self) {
        if let Some((watch, every)) = self.role_mut().probe.take() {
            tracing::debug!(?every, "half-closed while busy; probing");
            let gone = watch(self.wire().get_ref(), every);
            self.role_mut().gone = gone;
        }
    }

    fn no_streams(&mut self) {
        self.wire_mut().set_max_stream_length(0);
    }

    fn send(&mut self, frame: &OutFrame) -> crate::Result<()> {
        if self.is_write_done() {
            return Err(Error::Closed);
        }
        self.write(frame)?;
        Ok(())
    }

    fn max_frame_length(&self) -> usize {
        self.wire().max_frame_length()
    }

    fn poll_beside(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect> {
        beside::<false, Io>(self, cx)
    }

    fn poll_watching_beside(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect> {
        beside::<true, Io>(self, cx)
    }
}

/// Out of line: only a handler that waits comes here, and the
/// connection's loop stays small enough for the handler's call to be
/// inlined into it (instructions per frame, `scripts/callgrind`).
#[inline(never)]
fn beside<const WATCH: bool, Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
    cx: &mut Context<'_>,
) -> Poll<Disconnect> {
    loop {
        let polled = if WATCH {
            driver.poll_watching(cx)
        } else {
            driver.poll_event(cx, false)
        };
        match polled {
            Poll::Ready(Event::End(reason)) => return Poll::Ready(reason),
            Poll::Ready(_) => continue,
            // Watching saw the other end's EOF: is it still there?
            Poll::Pending
                if WATCH && driver.role().probe.is_some() && driver.wire().is_read_closed() =>
            {
                driver.watch_gone();
            }
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Sends everything still queued (outbox included), then shuts the
/// writing side down, within the write timeout. Used at the end, and to
/// retire a draining peer link (which goes on reading).
pub(crate) async fn goodbye<Io: AsyncRead + AsyncWrite + Unpin>(driver: &mut Driver<'_, Io>) {
    if driver.is_write_done() {
        return;
    }
    driver.role().conn.outbox().close();
    driver.set_budget(usize::MAX);
    driver.set_waiting(false);
    driver.fill();
    match driver.finish_writing().await {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            tracing::warn!("goodbye write stalled past the write timeout; dropping the connection")
        }
        Err(e) => tracing::debug!(error = %e, "goodbye write failed"),
    }
    let queued = driver.queued();
    driver.role_mut().publish(queued);
}

/// The connection's end: a [`goodbye`], or, when it `failed`, a reset.
/// Then what is already queued is flushed (within the write timeout;
/// pushes still in the outbox are dropped) and the socket is set to reset
/// when it is dropped ([`Socket`]), so the other end is told of a failure
/// (`ECONNRESET`, "connection reset by peer") rather than a goodbye. The
/// writing side is not shut down: a FIN first would read as a clean close.
/// What the kernel has not sent by the time the socket is dropped is
/// discarded by the reset.
///
/// One future for both, so the connection's task gains no await point
/// (one more made the handler's call too big to inline into its loop).
pub(crate) async fn finish<Io>(driver: &mut Driver<'_, Io>, failed: bool)
where
    Io: AsyncRead + AsyncWrite + Unpin + Socket,
{
    if !failed {
        return goodbye(driver).await;
    }
    if let Err(e) = driver.flush_last().await {
        tracing::debug!(error = %e, "last write before the reset failed");
    }
    let queued = driver.queued();
    driver.role_mut().publish(queued);
    if driver.wire().get_ref().closes_in_words() {
        // The close says what happened (a WebSocket's Close frame with its
        // code, TLS's close_notify); bounded, as the other end may not read.
        let io = driver.wire_mut().get_mut();
        let _ = tokio::time::timeout(LAST_WORDS, tokio::io::AsyncWriteExt::shutdown(io)).await;
    } else {
        driver.wire().get_ref().reset_on_drop();
    }
}

/// How long a failed connection whose transport closes in words (TLS,
/// WebSocket) is given to send them.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// What the server does to a connection's socket beyond reading and
/// writing, where the transport allows: a TCP socket is reset when dropped
/// after a failure (`SO_LINGER` 0: an RST, not a FIN, so the client can
/// tell a crash from a goodbye), and probed once its client half-closed
/// while work runs ([`Socket::watch_gone`]). A Unix socket does neither
/// and closes as usual (no such signal exists); TLS and WebSocket streams,
/// boxed past reach of their socket, are shut down after a failure, so
/// that they say why in their own close ([`Socket::closes_in_words`]).
pub(crate) trait Socket {
    /// Makes dropping this I/O reset the connection, where it can.
    fn reset_on_drop(&self) {}

    /// Whether a failed connection is closed by shutting this I/O down
    /// rather than by a reset: the transport has its own words for it (a
    /// WebSocket's Close frame with the code of the failure, TLS's
    /// close_notify).
    fn closes_in_words(&self) -> bool {
        false
    }

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

impl Socket for crate::layer::BoxIo {
    fn closes_in_words(&self) -> bool {
        true
    }
}
