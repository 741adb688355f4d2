//! The connection driver: one task per connection owns the unsplit I/O,
//! reads frames, writes replies, drains pushes and keeps every deadline.
//!
//! The fast path does only what a hand-written `Framed` echo loop does:
//! frames already buffered are handed out before anything is flushed, so the
//! replies to a batch leave in one write; no timer is armed and no clock is
//! read per frame (deadlines share one `Sleep`, reset only when it fires:
//! idleness is counted in ticks of activity, a stall is stamped once when a
//! write first blocks); nothing wakes the driver but the socket, the one
//! [`Signal`] of its connection (pushes, close, shutdown) and that timer.
//!
//! ```text
//!                 +---------------- poll_event ----------------+
//!  Signal ------> | flags: close / shutdown / abort / outbox   |
//!  (push, close)  | 1. buffered frame? -> Frame (no flush yet)  |
//!                 | 2. flush output (budget published)          | --> Event
//!  socket <-----> | 3. read more -> Frame / Eof                 |
//!  Sleep -------> | 4. deadlines: idle ticks, ping, stall, hello|
//!                 +---------------------------------------------+
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::mux::{Header, Kind};
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use crate::outbox::flag;
use crate::{Connection, Disconnect, Error};

/// Idleness is checked this many times per idle timeout: a connection is
/// closed between `idle` and `idle × (1 + 1/IDLE_TICKS)` after its last
/// frame, for four timer firings per idle period instead of a timer reset per
/// frame.
const IDLE_TICKS: u32 = 4;

/// What the driver reports to the role's loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// A complete frame arrived.
    Frame(BytesMut),
    /// The other end closed its writing side between frames.
    Eof,
    /// A signal changed the driver's state (`closing`, `stopping`): look.
    Signal,
    /// The connection must end now, for this reason.
    End(Disconnect),
}

/// One connection's I/O, deadlines and signals.
pub(crate) struct Driver<'a, Io> {
    pub(crate) wire: Wire<Io>,
    conn: &'a Connection,
    timer: Pin<&'a mut Sleep>,
    /// Whether `timer` holds a deadline we care about.
    armed: bool,
    /// Output held past which no new request is read.
    budget: usize,
    /// What the outbox was last told the driver holds.
    published: usize,
    /// Frames were left in the outbox because the output was over budget.
    outbox_waiting: bool,
    // Deadlines.
    idle: Option<Duration>,
    next_idle_tick: Option<Instant>,
    quiet_ticks: u32,
    /// Frames read so far, and the count at the last idle tick.
    activity: u64,
    seen_activity: u64,
    keepalive: Option<Duration>,
    next_ping: Option<Instant>,
    write_timeout: Duration,
    /// When the output first failed to make progress, and `written` then.
    stall: Option<(Instant, u64)>,
    hello_deadline: Option<(Instant, Duration)>,
    // State the role's loop reads.
    /// Something runs (a handler): not idleness.
    pub(crate) busy: bool,
    /// [`Connection::close`] was called.
    pub(crate) closing: bool,
    /// Graceful shutdown began.
    pub(crate) stopping: bool,
    /// The other end closed its writing side.
    pub(crate) eof: bool,
    /// The write side failed or was shut down: output is dropped.
    pub(crate) write_done: bool,
    /// The grace period is over: end without a goodbye.
    pub(crate) aborted: bool,
}

/// The deadlines a driver keeps (from the server's configuration).
pub(crate) struct Deadlines {
    pub(crate) idle: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) write_timeout: Duration,
    pub(crate) hello: Option<Duration>,
}

impl<'a, Io: AsyncRead + AsyncWrite + Unpin> Driver<'a, Io> {
    pub(crate) fn new(
        wire: Wire<Io>,
        conn: &'a Connection,
        timer: Pin<&'a mut Sleep>,
        budget: usize,
        deadlines: Deadlines,
    ) -> Self {
        let mut driver = Driver {
            wire,
            conn,
            timer,
            armed: false,
            budget,
            published: 0,
            outbox_waiting: false,
            idle: deadlines.idle,
            next_idle_tick: None,
            quiet_ticks: 0,
            activity: 0,
            seen_activity: 0,
            keepalive: deadlines.keepalive,
            next_ping: None,
            write_timeout: deadlines.write_timeout,
            stall: None,
            hello_deadline: None,
            busy: false,
            closing: false,
            stopping: false,
            eof: false,
            write_done: false,
            aborted: false,
        };
        let now = Instant::now();
        driver.next_idle_tick = driver.idle.map(|idle| now + idle / IDLE_TICKS);
        driver.hello_deadline = deadlines.hello.map(|limit| (now + limit, limit));
        driver.rearm();
        driver
    }

    /// Starts keepalive pings (peer links, once the hello says so).
    pub(crate) fn start_keepalive(&mut self) {
        if let Some(every) = self.keepalive {
            self.next_ping = Some(Instant::now() + every);
            self.rearm();
        }
    }

    /// The hello arrived: its deadline no longer applies.
    pub(crate) fn hello_done(&mut self) {
        self.hello_deadline = None;
    }

    /// Queues a frame for the other end (a reply, an error, a ping).
    ///
    /// # Errors
    /// [`Error::Framing`] when it is over the frame limit (nothing queued).
    pub(crate) fn write(&mut self, frame: &OutFrame) -> crate::Result<()> {
        if self.write_done {
            return Err(Error::Closed);
        }
        self.wire.write(frame)?;
        Ok(())
    }

    /// Waits for the next event; see [`Driver::poll_event`].
    pub(crate) async fn event(&mut self, read: bool) -> Event {
        std::future::poll_fn(|cx| self.poll_event(cx, read)).await
    }

    /// Moves the I/O forward and reports what needs the role's attention:
    /// a frame (when `read`), the other end's EOF, a signal, or the end.
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event> {
        loop {
            // A plain load per call; the waker is registered only when the
            // driver is about to wait (below), not once per frame.
            let mut flags = self.conn.signal().flags();
            if flags & flag::ABORT != 0 {
                self.aborted = true;
                return Poll::Ready(Event::End(Disconnect::Shutdown));
            }
            if flags & flag::CLOSE != 0 && !self.closing {
                self.closing = true;
                return Poll::Ready(Event::Signal);
            }
            if flags & flag::SHUTDOWN != 0 && !self.stopping {
                self.stopping = true;
                return Poll::Ready(Event::Signal);
            }
            if flags & flag::OUTBOX != 0 {
                self.conn.signal().take(flag::OUTBOX);
                // Taken: an OUTBOX raised from here on must show as a change
                // when the flags are compared before waiting.
                flags &= !flag::OUTBOX;
                self.take_outbox();
            }
            let room = self.wire.queued() < self.budget;
            // Frames already read come first: their replies join this batch.
            if read && room {
                match self.wire.next_frame() {
                    Ok(Some(frame)) => {
                        self.activity += 1;
                        return Poll::Ready(Event::Frame(frame));
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Event::End(Disconnect::Error(e.into()))),
                }
            }
            if self.wire.queued() > 0 && !self.write_done {
                match self.wire.poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.stall = None,
                    Poll::Ready(Err(e)) => {
                        self.write_failed(e.into());
                        return Poll::Ready(Event::Signal);
                    }
                    Poll::Pending => self.note_stall(),
                }
                self.publish();
                if self.outbox_waiting && self.wire.queued() < self.budget / 2 {
                    self.take_outbox();
                    continue;
                }
            } else if self.published != 0 {
                self.publish();
            }
            if read && !self.eof && self.wire.queued() < self.budget {
                match self.wire.poll_frame(cx) {
                    Poll::Ready(Ok(Some(frame))) => {
                        self.activity += 1;
                        return Poll::Ready(Event::Frame(frame));
                    }
                    Poll::Ready(Ok(None)) => {
                        self.eof = true;
                        return Poll::Ready(Event::Eof);
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Event::End(Disconnect::Error(e.into())))
                    }
                    Poll::Pending => {}
                }
            }
            if !self.armed || self.timer.as_mut().poll(cx).is_pending() {
                if self.conn.signal().poll(cx) != flags {
                    // Raised while we looked elsewhere: look again.
                    continue;
                }
                return Poll::Pending;
            }
            if let Some(end) = self.on_timer() {
                return Poll::Ready(Event::End(end));
            }
        }
    }

    /// Takes frames queued by other tasks while the output holds less than
    /// half the budget: the rest wait in the outbox, where a slow consumer's
    /// oldest pushes can still be evicted (`DropOldest`) rather than sit
    /// unreachable in the write buffer.
    fn take_outbox(&mut self) {
        if self.write_done {
            return;
        }
        let budget = self.budget / 2;
        let wire = &mut self.wire;
        self.conn.outbox().drain(|frame| {
            // Frames in the outbox passed the length check when queued.
            let _ = wire.write(&frame);
            wire.queued() < budget
        });
        self.outbox_waiting = !self.conn.outbox().is_empty();
        self.publish();
    }

    /// Tells the outbox how much output the driver holds, when it changed.
    fn publish(&mut self) {
        let now = if self.write_done {
            0
        } else {
            self.wire.queued()
        };
        if now != self.published {
            self.published = now;
            self.conn.outbox().publish(now);
        }
    }

    /// A write blocked: stamp the stall once (or again after progress), and
    /// make sure the timer fires by its deadline.
    fn note_stall(&mut self) {
        let written = self.wire.written();
        match self.stall {
            Some((_, at)) if at == written => return,
            _ => {}
        }
        let now = Instant::now();
        self.stall = Some((now, written));
        let deadline = now + self.write_timeout;
        if !self.armed || self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
            self.armed = true;
        }
    }

    fn write_failed(&mut self, error: Error) {
        tracing::debug!(%error, "write failed");
        self.write_done = true;
        self.publish();
        self.conn.fail(error);
    }

    /// The timer fired: check every deadline with one clock read, then
    /// re-arm for the earliest one left.
    fn on_timer(&mut self) -> Option<Disconnect> {
        let now = Instant::now();
        if let Some((since, written)) = self.stall {
            if self.wire.written() != written {
                self.stall = Some((now, self.wire.written()));
            } else if now >= since + self.write_timeout {
                // Dropped as a slow consumer: the connection closes with
                // this failure as its reason (pushes waiting for room fail
                // at once), and a running handler may still finish.
                self.write_done = true;
                self.stall = None;
                self.publish();
                self.conn.slow(self.write_timeout);
            }
        }
        if let Some((deadline, limit)) = self.hello_deadline {
            if now >= deadline {
                return Some(Disconnect::Error(Error::HandshakeTimeout(limit)));
            }
        }
        if let (Some(tick), Some(idle)) = (self.next_idle_tick, self.idle) {
            if now >= tick {
                if self.activity != self.seen_activity || self.busy {
                    self.seen_activity = self.activity;
                    self.quiet_ticks = 0;
                } else {
                    self.quiet_ticks += 1;
                    if self.quiet_ticks >= IDLE_TICKS {
                        return Some(Disconnect::IdleTimeout);
                    }
                }
                self.next_idle_tick = Some(now + idle / IDLE_TICKS);
            }
        }
        if let (Some(at), Some(every)) = (self.next_ping, self.keepalive) {
            if now >= at {
                let ping = OutFrame::with_header(
                    Header {
                        kind: Kind::Ping,
                        id: 0,
                    },
                    Bytes::new(),
                );
                let _ = self.write(&ping);
                self.next_ping = Some(now + every);
            }
        }
        self.rearm();
        None
    }

    /// Sets the timer to the earliest deadline, if any.
    fn rearm(&mut self) {
        let stall = self.stall.map(|(since, _)| since + self.write_timeout);
        let hello = self.hello_deadline.map(|(at, _)| at);
        let earliest = [self.next_idle_tick, self.next_ping, stall, hello]
            .into_iter()
            .flatten()
            .min();
        match earliest {
            Some(at) => {
                self.timer.as_mut().reset(at);
                self.armed = true;
            }
            None => self.armed = false,
        }
    }

    /// Sends everything still queued (outbox included), then shuts the
    /// writing side down, within the write timeout. Used at the end, and to
    /// retire a draining peer link (which goes on reading).
    pub(crate) async fn finish_writing(&mut self) {
        if self.write_done {
            return;
        }
        self.conn.outbox().close();
        self.budget = usize::MAX;
        self.outbox_waiting = false;
        self.take_outbox();
        let limit = self.write_timeout;
        match tokio::time::timeout(limit, self.wire.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "goodbye write failed"),
            Err(_) => tracing::warn!(
                write_timeout = ?limit,
                "goodbye write stalled; dropping the connection"
            ),
        }
        self.write_done = true;
        self.publish();
    }

    /// Reads whatever has already arrived, without waiting: at shutdown,
    /// requests sent before it are answered rather than left unread.
    pub(crate) fn read_now(&mut self) -> Option<enchufe_framing::Result<Option<BytesMut>>> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match self.wire.poll_frame(&mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }
}
