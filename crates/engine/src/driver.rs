//! The connection driver: the one loop that moves a connection's bytes, for
//! every role (a server's connection, a client's link, a peer link) and every
//! transport (anything `AsyncRead + AsyncWrite`).
//!
//! A [`Driver`] owns the unsplit I/O (a [`Wire`]), the connection's one
//! [`Signal`] and its one timer. Each role runs its own small loop on top,
//! asking [`Driver::poll_event`] what needs its attention and answering
//! with [`Driver::write`]: the server runs handlers and writes their
//! replies; the client pairs replies with requests. What a hand-written
//! `Framed` loop does, the driver does in the same order, and nothing more
//! per frame:
//!
//! ```text
//!                 +---------------- poll_event ------------------+
//!  Signal ------> | role bits -> Signal(bits); QUEUED -> Queued   |
//!  (other tasks)  | 1. a frame already buffered? -> Frame         |
//!                 | 2. flush the output (stall stamped once)      | --> Event
//!  socket <-----> | 3. read more -> Frame / Eof / ReadFailed      |
//!  Sleep -------> | 4. deadlines: idle ticks, keepalive, stall,   |
//!                 |    hello, the role's own (request deadlines)  |
//!                 +-----------------------------------------------+
//! ```
//!
//! - Frames already read come first, so the replies to a batch leave in one
//!   write; the output is flushed only when no further frame is buffered.
//! - No clock is read and no timer is armed per frame: every deadline shares
//!   one `Sleep`, reset only when it fires or an earlier deadline comes.
//!   Idleness is counted in ticks of activity; a stalled write is stamped
//!   once when it first blocks.
//! - Nothing wakes the driver but the socket, the timer and the [`Signal`]
//!   (whose waker is registered only when the driver is about to wait).
//! - Reading stops while the output holds its byte budget, so a peer that
//!   does not read cannot make this end buffer without bound.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use enchufe_framing::mux::{Header, Kind};
use enchufe_framing::{Error, LengthPrefix, Next, OutFrame, Result, Split, Wire};

use crate::Signal;

/// The [`Signal`] bit that says frames wait in the role's queue (pushes,
/// requests queued by other tasks). Every other bit is the role's own and
/// comes back as [`Event::Signal`].
pub const QUEUED: u8 = 1;

/// Most bytes [`Driver::poll_watching`] reads ahead while the role takes no
/// frames: enough to see a reset behind a few pipelined requests, small
/// next to the frame limit (a connection may hold a whole frame anyway).
/// 64 KiB: the size from which a frame gets its own buffer.
pub const WATCH_BOUND: usize = enchufe_framing::LARGE_FRAME;

/// Idleness is checked this many times per idle timeout: a connection is
/// closed between `idle` and `idle × (1 + 1/IDLE_TICKS)` after its last
/// frame, for four timer firings per idle period instead of a timer reset per
/// frame.
const IDLE_TICKS: u32 = 4;

/// What needs the role's attention.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A complete frame arrived.
    Frame(BytesMut),
    /// The other end closed its writing side between frames.
    Eof,
    /// A streamed frame of this many body bytes began (a wire with
    /// [`Config::max_stream_length`](enchufe_framing::Config::max_stream_length) on):
    /// take its body with [`Driver::poll_chunk`] before reading again.
    Stream(u64),
    /// Frames wait in the role's queue: the [`QUEUED`] bit is raised, or
    /// the output drained below half the budget while the role said frames
    /// were waiting ([`Driver::set_waiting`]). Take them with
    /// [`Driver::take_queued`] and [`Driver::write`].
    Queued,
    /// These role bits of the signal were raised (each reported once).
    Signal(u8),
    /// The role's own deadline ([`Driver::set_deadline`]) passed.
    Deadline,
    /// Reading failed: a frame over the limit, the stream cut inside a
    /// frame, the socket reset. The connection cannot go on.
    ReadFailed(Error),
    /// Writing failed; output is dropped from now on (reading may go on).
    WriteFailed(Error),
    /// The output made no progress for the write timeout: the other end does
    /// not read. Output is dropped from now on.
    Stalled(Duration),
    /// No frame arrived for the idle timeout, and the role was not busy.
    IdleTimeout,
    /// The hello (or first frame) did not arrive within this limit.
    HelloTimeout(Duration),
    /// A frame began arriving and was not complete within this limit (a
    /// client trickling bytes to hold the connection: slowloris).
    FrameTimeout(Duration),
}

/// The deadlines a driver keeps. Each is off when `None`.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    /// End the connection after this long without a frame (while the role
    /// is not [busy](Driver::set_busy)).
    pub idle: Option<Duration>,
    /// Send a multiplexed `ping` this often, once
    /// [started](Driver::start_keepalive).
    pub keepalive: Option<Duration>,
    /// Give up on the output after this long without write progress.
    pub write_timeout: Option<Duration>,
    /// The hello must arrive within this long (until
    /// [`Driver::hello_done`]).
    pub hello: Option<Duration>,
    /// Once part of a frame has arrived, the rest must arrive within this
    /// long (checked while the role reads; a streamed body is exempt, its
    /// chunks count as activity for `idle` instead).
    pub frame: Option<Duration>,
}

/// One connection's I/O, signal and deadlines; see the [module](self).
///
/// `S` is how the driver reaches its [`Signal`]: a reference (the server's
/// connection task borrows it from the connection) or an `Arc` (a client's
/// link shares it with its handles). `C` is the wire's codec ([`Split`]):
/// length-prefixed frames by default.
pub struct Driver<Io, S, C = LengthPrefix> {
    wire: Wire<Io, C>,
    signal: S,
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` holds a deadline we care about.
    armed: bool,
    /// Output held past which no frame is read.
    budget: usize,
    /// Role bits already reported.
    seen: u8,
    /// Frames wait in the role's queue for the output to drain.
    waiting: bool,
    /// Writing failed, stalled or was shut down: output is dropped.
    write_done: bool,
    /// The last flush was pending after every queued byte was handed to the
    /// I/O: an I/O that buffers (TLS, WebSocket) still holds bytes, so the
    /// flush must be retried even though nothing is queued here.
    unflushed: bool,
    /// Something of the role's runs (a handler): not idleness.
    busy: bool,
    /// [`Event::Eof`] was reported (the wire may have seen EOF earlier,
    /// while [watching](Driver::poll_watching), with frames still to hand
    /// out before it).
    eof: bool,
    idle: Option<Duration>,
    next_idle_tick: Option<Instant>,
    quiet_ticks: u32,
    /// Frames read so far, and the count at the last idle tick.
    activity: u64,
    seen_activity: u64,
    keepalive: Option<Duration>,
    next_ping: Option<Instant>,
    write_timeout: Option<Duration>,
    /// When the output first failed to make progress, and `written` then.
    stall: Option<(Instant, u64)>,
    hello: Option<(Instant, Duration)>,
    frame_limit: Option<Duration>,
    /// Since when part of a frame has been waiting for the rest, and the
    /// frames read by then (a frame completed since: a new deadline).
    partial_since: Option<(Instant, u64)>,
    /// The role's own deadline.
    deadline: Option<Instant>,
    /// Traffic counters (feature `metrics`), reported when the driver
    /// waits, when its timer fires and when it is dropped: per batch, not
    /// per frame.
    #[cfg(feature = "metrics")]
    meter: Option<crate::meter::Meter>,
}

#[cfg(feature = "metrics")]
impl<Io, S, C> Driver<Io, S, C> {
    /// Adds what moved since the last report to the meter's counters.
    fn report(&mut self) {
        if let Some(meter) = &mut self.meter {
            let (frames_out, bytes_in, bytes_out) = self.wire.traffic();
            meter.report(crate::meter::Traffic {
                frames_in: self.activity,
                frames_out,
                bytes_in,
                bytes_out,
            });
        }
    }
}

#[cfg(feature = "metrics")]
impl<Io, S, C> Drop for Driver<Io, S, C> {
    fn drop(&mut self) {
        self.report();
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin, S, C: Split> std::fmt::Debug for Driver<Io, S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("queued", &self.wire.queued())
            .field("budget", &self.budget)
            .field("write_done", &self.write_done)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

impl<Io, S, C> Driver<Io, S, C>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    S: Deref<Target = Signal>,
    C: Split,
{
    /// A driver over `wire`, woken by `signal`, that stops reading while its
    /// output holds `budget` bytes or more.
    pub fn new(wire: Wire<Io, C>, signal: S, budget: usize, deadlines: Deadlines) -> Self {
        let now = Instant::now();
        let mut driver = Driver {
            wire,
            signal,
            timer: Box::pin(tokio::time::sleep_until(now)),
            armed: false,
            budget,
            seen: 0,
            waiting: false,
            write_done: false,
            unflushed: false,
            busy: false,
            eof: false,
            idle: deadlines.idle,
            next_idle_tick: deadlines.idle.map(|idle| now + idle / IDLE_TICKS),
            quiet_ticks: 0,
            activity: 0,
            seen_activity: 0,
            keepalive: deadlines.keepalive,
            next_ping: None,
            write_timeout: deadlines.write_timeout,
            stall: None,
            hello: deadlines.hello.map(|limit| (now + limit, limit)),
            frame_limit: deadlines.frame,
            partial_since: None,
            deadline: None,
            #[cfg(feature = "metrics")]
            meter: None,
        };
        driver.rearm();
        driver
    }

    /// The framed I/O.
    pub fn wire(&self) -> &Wire<Io, C> {
        &self.wire
    }

    /// The framed I/O, to write (prefer [`Driver::write`], which knows
    /// whether output is still wanted).
    pub fn wire_mut(&mut self) -> &mut Wire<Io, C> {
        &mut self.wire
    }

    /// The signal other tasks raise.
    pub fn signal(&self) -> &Signal {
        &self.signal
    }

    /// Bytes of output written and not yet flushed.
    pub fn queued(&self) -> usize {
        if self.write_done {
            0
        } else {
            self.wire.queued()
        }
    }

    /// Frames read so far (a streamed body's chunks included): zero for a
    /// connection that has sent nothing.
    pub fn frames_read(&self) -> u64 {
        self.activity
    }

    /// Writing failed, stalled or was shut down: output is dropped.
    pub fn is_write_done(&self) -> bool {
        self.write_done
    }

    /// Raises or lowers the output budget (`usize::MAX`: no limit).
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    /// Whether the role is working (a handler runs): an idle timeout does
    /// not fire while it is.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// Frames still wait in the role's queue, left there because the output
    /// holds enough: [`Event::Queued`] comes again once it drained below
    /// half the budget.
    pub fn set_waiting(&mut self, waiting: bool) {
        self.waiting = waiting;
    }

    /// Starts keepalive pings (a peer link, once the hellos say so).
    pub fn start_keepalive(&mut self) {
        if let Some(every) = self.keepalive {
            self.next_ping = Some(Instant::now() + every);
            self.rearm();
        }
    }

    /// The hello arrived: its deadline no longer applies.
    pub fn hello_done(&mut self) {
        self.hello = None;
    }

    /// Reports this connection's traffic through `meter` from now on
    /// (feature `metrics`): frames and bytes each way, added to its
    /// counters whenever the driver waits, its timer fires, and once more
    /// when it is dropped.
    #[cfg(feature = "metrics")]
    pub fn set_meter(&mut self, meter: crate::meter::Meter) {
        self.meter = Some(meter);
    }

    /// Sets the role's own deadline ([`Event::Deadline`] when it passes),
    /// or clears it. The timer is reset only if this one is earlier than
    /// what it waits for.
    pub fn set_deadline(&mut self, at: Option<Instant>) {
        self.deadline = at;
        match at {
            Some(at) if !self.armed || at < self.timer.deadline() => {
                self.timer.as_mut().reset(at);
                self.armed = true;
            }
            _ => {}
        }
    }

    /// The role's deadline, if set.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Lowers [`QUEUED`] before the role takes its queue: a frame queued
    /// from now on raises it again.
    pub fn take_queued(&mut self) {
        self.signal.take(QUEUED);
    }

    /// Queues a frame for the other end.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] when it is over the frame limit (nothing
    /// queued). A frame written after the output is done is dropped
    /// silently: [`Event::WriteFailed`] or [`Event::Stalled`] said so.
    pub fn write(&mut self, frame: &OutFrame) -> Result<()> {
        if self.write_done {
            return Ok(());
        }
        self.wire.write(frame)
    }

    /// Queues a chunk of a streamed frame's body (after
    /// [`Wire::write_stream_header`] through [`Driver::wire_mut`]); dropped,
    /// as every write, once the output is done.
    pub fn write_chunk(&mut self, chunk: &Bytes) {
        if !self.write_done {
            self.wire.write_chunk(chunk);
        }
    }

    /// The fast path of [`Driver::poll_event`], for a role's loop to try
    /// first: a frame already buffered, when `read`, no signal is raised and
    /// the output has room (what `poll_event` would report first anyway).
    /// `None`: ask `poll_event`.
    #[inline]
    pub fn buffered_frame(&mut self, read: bool) -> Option<Result<BytesMut>> {
        if !read || self.signal.flags() != 0 || self.queued() >= self.budget {
            return None;
        }
        match self.wire.next_frame() {
            Ok(Some(frame)) => {
                self.activity += 1;
                Some(Ok(frame))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The next chunk of a streamed frame's body ([`Event::Stream`]):
    /// `Ok(None)` once it is all taken. Each chunk counts as activity for
    /// the idle timeout.
    ///
    /// # Errors
    /// As [`Wire::poll_chunk`].
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        let chunk = std::task::ready!(self.wire.poll_chunk(cx));
        if let Ok(Some(_)) = &chunk {
            self.activity += 1;
        }
        Poll::Ready(chunk)
    }

    /// Waits for the next event; see [`Driver::poll_event`].
    pub async fn event(&mut self, read: bool) -> Event {
        std::future::poll_fn(|cx| self.poll_event(cx, read)).await
    }

    /// Moves the I/O forward and reports what needs the role's attention.
    /// Frames are read only when `read` (the role has room for them) and the
    /// output holds less than the budget.
    pub fn poll_event(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event> {
        self.poll::<false>(cx, read)
    }

    /// [`Driver::poll_event`] for a role that takes no frames now (a plain
    /// server's handler runs) but must know if the other end is gone: the
    /// socket is still read, into the buffer, up to [`WATCH_BOUND`] bytes.
    /// A reset or read error is [`Event::ReadFailed`] at once; EOF (the
    /// other end half-closed, and may still wait for answers) is kept until
    /// the frames before it are taken, then reported as usual. Frames read
    /// ahead come out of the next `poll_event`, in order.
    pub fn poll_watching(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        self.poll::<true>(cx, false)
    }

    /// [`Driver::poll_event`], watching the socket when `WATCH` (compiled
    /// away from the reading path).
    #[inline(always)]
    fn poll<const WATCH: bool>(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event> {
        loop {
            // A plain load per call; the waker is registered only when the
            // driver is about to wait (below), not once per frame.
            let flags = self.signal.flags();
            let new = flags & !QUEUED & !self.seen;
            if new != 0 {
                self.seen |= new;
                return Poll::Ready(Event::Signal(new));
            }
            if flags & QUEUED != 0 && !self.write_done {
                return Poll::Ready(Event::Queued);
            }
            let room = self.queued() < self.budget;
            // Frames already read come first: their replies join this batch.
            if read && room {
                match self.wire.next_frame() {
                    Ok(Some(frame)) => {
                        self.activity += 1;
                        return Poll::Ready(Event::Frame(frame));
                    }
                    Ok(None) => {
                        if let Some(len) = self.wire.take_stream() {
                            self.activity += 1;
                            return Poll::Ready(Event::Stream(len));
                        }
                    }
                    Err(e) => return Poll::Ready(Event::ReadFailed(e)),
                }
            }
            if !self.write_done && (self.wire.queued() > 0 || self.unflushed) {
                self.unflushed = false;
                match self.wire.poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.stall = None,
                    Poll::Ready(Err(e)) => {
                        self.write_done = true;
                        return Poll::Ready(Event::WriteFailed(e));
                    }
                    Poll::Pending => {
                        self.unflushed = true;
                        self.note_stall();
                    }
                }
                if self.waiting && self.wire.queued() < self.budget / 2 {
                    self.waiting = false;
                    return Poll::Ready(Event::Queued);
                }
            }
            if read && self.queued() < self.budget && !self.eof && !self.wire.is_streaming() {
                match self.wire.poll_next(cx) {
                    Poll::Ready(Ok(Next::Frame(frame))) => {
                        self.activity += 1;
                        return Poll::Ready(Event::Frame(frame));
                    }
                    Poll::Ready(Ok(Next::Stream(len))) => {
                        self.activity += 1;
                        return Poll::Ready(Event::Stream(len));
                    }
                    Poll::Ready(Ok(Next::Eof)) => {
                        self.eof = true;
                        return Poll::Ready(Event::Eof);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Event::ReadFailed(e)),
                    Poll::Pending => {}
                }
            }
            if WATCH {
                if let Err(e) = self.wire.watch(cx, WATCH_BOUND) {
                    return Poll::Ready(Event::ReadFailed(e));
                }
            }
            if self.frame_limit.is_some() {
                self.watch_partial(read);
            }
            if !self.armed || self.timer.as_mut().poll(cx).is_pending() {
                // Register before waiting; a flag raised meanwhile means
                // another turn.
                if self.signal.poll(cx) != flags {
                    continue;
                }
                #[cfg(feature = "metrics")]
                self.report();
                return Poll::Pending;
            }
            if let Some(event) = self.on_timer() {
                return Poll::Ready(event);
            }
        }
    }

    /// About to wait: a frame left half-arrived starts its deadline (one
    /// clock read per wait, not per frame); a whole one, or not reading,
    /// clears it. A role that is not reading (a handler runs) does not hold
    /// the other end to the deadline.
    fn watch_partial(&mut self, read: bool) {
        let partial = read && self.wire.has_partial_frame();
        let fresh = |since: Option<(Instant, u64)>| since.map(|(_, seen)| seen);
        match (partial, fresh(self.partial_since), self.frame_limit) {
            (true, seen, Some(limit)) if seen != Some(self.activity) => {
                let now = Instant::now();
                self.partial_since = Some((now, self.activity));
                let deadline = now + limit;
                if !self.armed || self.timer.deadline() > deadline {
                    self.timer.as_mut().reset(deadline);
                    self.armed = true;
                }
            }
            (false, Some(_), _) => self.partial_since = None,
            _ => {}
        }
    }

    /// A write blocked: stamp the stall once (or again after progress), and
    /// make sure the timer fires by its deadline.
    fn note_stall(&mut self) {
        let Some(limit) = self.write_timeout else {
            return;
        };
        let written = self.wire.written();
        if matches!(self.stall, Some((_, at)) if at == written) {
            return;
        }
        let now = Instant::now();
        self.stall = Some((now, written));
        let deadline = now + limit;
        if !self.armed || self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
            self.armed = true;
        }
    }

    /// The timer fired: check every deadline with one clock read, then
    /// re-arm for the earliest one left.
    fn on_timer(&mut self) -> Option<Event> {
        #[cfg(feature = "metrics")]
        self.report();
        let now = Instant::now();
        let event = self.due(now);
        self.rearm();
        event
    }

    fn due(&mut self, now: Instant) -> Option<Event> {
        if let (Some((since, written)), Some(limit)) = (self.stall, self.write_timeout) {
            if self.wire.written() != written {
                self.stall = Some((now, self.wire.written()));
            } else if now >= since + limit {
                self.write_done = true;
                self.stall = None;
                return Some(Event::Stalled(limit));
            }
        }
        if let Some((deadline, limit)) = self.hello {
            if now >= deadline {
                self.hello = None;
                return Some(Event::HelloTimeout(limit));
            }
        }
        if let (Some((since, seen)), Some(limit)) = (self.partial_since, self.frame_limit) {
            if now >= since + limit {
                // Cleared either way: the next wait stamps a frame still
                // (or newly) half-arrived.
                self.partial_since = None;
                if seen == self.activity && self.wire.has_partial_frame() {
                    return Some(Event::FrameTimeout(limit));
                }
            }
        }
        if let (Some(tick), Some(idle)) = (self.next_idle_tick, self.idle) {
            if now >= tick {
                self.next_idle_tick = Some(now + idle / IDLE_TICKS);
                if self.activity != self.seen_activity || self.busy {
                    self.seen_activity = self.activity;
                    self.quiet_ticks = 0;
                } else {
                    self.quiet_ticks += 1;
                    if self.quiet_ticks >= IDLE_TICKS {
                        self.quiet_ticks = 0;
                        return Some(Event::IdleTimeout);
                    }
                }
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
        if matches!(self.deadline, Some(at) if now >= at) {
            self.deadline = None;
            return Some(Event::Deadline);
        }
        None
    }

    /// Sets the timer to the earliest deadline, if any.
    fn rearm(&mut self) {
        let stall = self
            .stall
            .zip(self.write_timeout)
            .map(|((since, _), limit)| since + limit);
        let hello = self.hello.map(|(at, _)| at);
        let partial = self
            .partial_since
            .zip(self.frame_limit)
            .map(|((since, _), limit)| since + limit);
        let earliest = [
            self.next_idle_tick,
            self.next_ping,
            stall,
            hello,
            partial,
            self.deadline,
        ]
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

    /// Flushes and shuts the writing side down, within the write timeout
    /// (if any). The output is done afterwards, whatever happened.
    ///
    /// # Errors
    /// The write's error, or an `io::ErrorKind::TimedOut` one when the
    /// write timeout passed first.
    pub async fn finish_writing(&mut self) -> Result<()> {
        if self.write_done {
            return Ok(());
        }
        let result = match self.write_timeout {
            Some(limit) => match tokio::time::timeout(limit, self.wire.shutdown()).await {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
            },
            None => self.wire.shutdown().await,
        };
        self.write_done = true;
        result
    }

    /// Flushes what is queued, within the write timeout (if any), without
    /// shutting the writing side down: the last words before a connection
    /// is reset. The output is done afterwards, whatever happened.
    ///
    /// # Errors
    /// As [`Driver::finish_writing`].
    pub async fn flush_last(&mut self) -> Result<()> {
        if self.write_done {
            return Ok(());
        }
        let result = match self.write_timeout {
            Some(limit) => match tokio::time::timeout(limit, self.wire.flush()).await {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
            },
            None => self.wire.flush().await,
        };
        self.write_done = true;
        result
    }

    /// Flushes what is queued and shuts the writing side down, without
    /// waiting: `Pending` until done. The output is done once it is ready.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.write_done {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(self.wire.poll_shutdown(cx));
        self.write_done = true;
        Poll::Ready(result)
    }

    /// Reads a frame that has already arrived, without waiting: `None` when
    /// there is none yet (at shutdown, requests sent before it are answered
    /// rather than left unread).
    pub fn read_now(&mut self) -> Option<Result<Option<BytesMut>>> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match self.wire.poll_frame(&mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use enchufe_framing::Config;

    fn driver(
        io: tokio::io::DuplexStream,
        budget: usize,
        deadlines: Deadlines,
    ) -> Driver<tokio::io::DuplexStream, Arc<Signal>> {
        Driver::new(
            Wire::new(io, &Config::default()),
            Arc::new(Signal::default()),
            budget,
            deadlines,
        )
    }

    #[tokio::test]
    async fn frames_then_eof() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut d = driver(ours, usize::MAX, Deadlines::default());
        use tokio::io::AsyncWriteExt;
        theirs.write_all(b"\0\0\0\x02hi\0\0\0\x01!").await.unwrap();
        drop(theirs);
        assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"hi"));
        assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
        assert!(matches!(d.event(true).await, Event::Eof));
    }

    #[tokio::test]
    async fn role_bits_are_reported_once_and_queued_until_taken() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut d = driver(ours, usize::MAX, Deadlines::default());
        d.signal().raise(4 | QUEUED);
        assert!(matches!(d.event(true).await, Event::Signal(4)));
        assert!(matches!(d.event(true).await, Event::Queued));
        assert!(matches!(d.event(true).await, Event::Queued));
        d.take_queued();
        let pending = tokio::time::timeout(Duration::from_millis(20), d.event(true)).await;
        assert!(pending.is_err(), "nothing more to report");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_fires_after_quiet_ticks_but_not_while_busy() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let deadlines = Deadlines {
            idle: Some(Duration::from_secs(4)),
            ..Deadlines::default()
        };
        let mut d = driver(ours, usize::MAX, deadlines.clone());
        let start = Instant::now();
        assert!(matches!(d.event(true).await, Event::IdleTimeout));
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(4) && took <= Duration::from_secs(5));

        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut d = driver(ours, usize::MAX, deadlines);
        d.set_busy(true);
        let r = tokio::time::timeout(Duration::from_secs(30), d.event(true)).await;
        assert!(r.is_err(), "busy is not idle");
    }

    #[tokio::test(start_paused = true)]
    async fn the_roles_deadline_and_the_hello_deadline_fire() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let deadlines = Deadlines {
            hello: Some(Duration::from_secs(10)),
            ..Deadlines::default()
        };
        let mut d = driver(ours, usize::MAX, deadlines);
        d.set_deadline(Some(Instant::now() + Duration::from_secs(1)));
        assert!(matches!(d.event(true).await, Event::Deadline));
        assert_eq!(d.deadline(), None);
        assert!(
            matches!(d.event(true).await, Event::HelloTimeout(t) if t == Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_trickled_past_its_deadline_ends_but_steady_frames_do_not() {
        use tokio::io::AsyncWriteExt;
        let deadlines = Deadlines {
            frame: Some(Duration::from_secs(5)),
            ..Deadlines::default()
        };
        // Steady traffic whose reads end mid-frame: each wait sees a partial
        // frame, but a different one, so no deadline passes.
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut d = driver(ours, usize::MAX, deadlines.clone());
        for _ in 0..10 {
            theirs.write_all(b"\0\0\0\x02hi\0\0").await.unwrap();
            assert!(matches!(d.event(true).await, Event::Frame(_)));
            tokio::time::sleep(Duration::from_secs(3)).await;
            theirs.write_all(b"\0\x01!").await.unwrap();
            assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
        }
        // One byte every 2 s: the frame never completes in time.
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut d = driver(ours, usize::MAX, deadlines);
        let start = Instant::now();
        let trickle = tokio::spawn(async move {
            for byte in [0u8, 0, 0, 9, 1, 2, 3, 4] {
                if theirs.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        assert!(
            matches!(d.event(true).await, Event::FrameTimeout(t) if t == Duration::from_secs(5))
        );
        assert!(start.elapsed() <= Duration::from_secs(6));
        trickle.abort();
    }

    /// Watches for `ms` of (real) time: `Some` if an event came.
    async fn watch_for(d: &mut TestDriver, ms: u64) -> Option<Event> {
        let watching = std::future::poll_fn(|cx| d.poll_watching(cx));
        tokio::time::timeout(Duration::from_millis(ms), watching)
            .await
            .ok()
    }

    type TestDriver = Driver<tokio::io::DuplexStream, Arc<Signal>>;

    #[tokio::test]
    async fn watching_reads_ahead_within_its_bound_and_keeps_eof_for_after_the_frames() {
        use tokio::io::AsyncWriteExt;
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut d = driver(ours, usize::MAX, Deadlines::default());
        theirs.write_all(b"\0\0\0\x02hi\0\0\0\x01!").await.unwrap();
        drop(theirs);
        // The EOF is read but not reported: the frames before it come first.
        assert!(watch_for(&mut d, 20).await.is_none());
        assert!(d.wire().is_read_closed());
        assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"hi"));
        assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
        assert!(matches!(d.event(true).await, Event::Eof));

        // 1,000 frames of 1 KiB pipelined: watching reads about WATCH_BOUND
        // of them, then nothing, and every frame still comes out in order.
        let (ours, mut theirs) = tokio::io::duplex(2 << 20);
        let mut d = driver(ours, usize::MAX, Deadlines::default());
        let mut sent = Vec::new();
        for i in 0..1000u32 {
            sent.extend_from_slice(&1024u32.to_be_bytes());
            sent.extend(std::iter::repeat_n((i % 251) as u8, 1024));
        }
        theirs.write_all(&sent).await.unwrap();
        assert!(watch_for(&mut d, 20).await.is_none());
        let held = d.wire().read_capacity();
        assert!(
            (WATCH_BOUND..=2 * WATCH_BOUND + 8192).contains(&held),
            "{held}"
        );
        for i in 0..1000u32 {
            match d.event(true).await {
                Event::Frame(f) => assert!(f.len() == 1024 && f[0] == (i % 251) as u8),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn watching_stops_at_a_whole_large_frame_and_every_frame_comes_out() {
        use tokio::io::AsyncWriteExt;
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut d = driver(ours, usize::MAX, Deadlines::default());
        let len = 100 * 1024;
        let mut sent = (len as u32).to_be_bytes().to_vec();
        sent.extend(vec![7u8; len]);
        sent.extend_from_slice(b"\0\0\0\x01!");
        // Part of the large frame: it moves to its own buffer.
        theirs.write_all(&sent[..1000]).await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(20), d.event(true)).await;
        assert!(r.is_err());
        theirs.write_all(&sent[1000..]).await.unwrap();
        assert!(watch_for(&mut d, 20).await.is_none());
        assert!(!d.wire().is_read_closed());
        assert!(matches!(d.event(true).await, Event::Frame(f) if f.len() == len));
        assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_does_not_read_stalls_the_output_and_stops_reading() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let deadlines = Deadlines {
            write_timeout: Some(Duration::from_secs(2)),
            ..Deadlines::default()
        };
        let mut d = driver(ours, 1024, deadlines);
        d.write(&OutFrame::plain(Bytes::from(vec![7u8; 4096])))
            .unwrap();
        use tokio::io::AsyncWriteExt;
        // A frame is waiting, but the output is over budget: not read.
        theirs.write_all(b"\0\0\0\x01x").await.unwrap();
        assert!(matches!(d.event(true).await, Event::Stalled(t) if t == Duration::from_secs(2)));
        assert!(d.is_write_done());
        assert_eq!(d.queued(), 0);
        // Output dropped: the frame can be read now.
        assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"x"));
    }
}
