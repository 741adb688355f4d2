//! The connection driver: the one loop that moves a connection's bytes, for
//! every role (a server's connection, a client's link, a peer link) and every
//! transport (anything `AsyncRead + AsyncWrite`).
//!
//! A [`Driver`] owns the unsplit I/O (a [`Wire`]), the connection's one
//! [`Signal`], its one timer, and its [`Role`]: what the connection is for
//! (the server's plain and multiplexed profiles, the client's link,
//! HTTP/1.1). The driver calls the role's hooks for everything but a frame
//! on its fast path (other tasks' queued frames, signal bits, EOF,
//! failures, deadlines), and the role's own loop gets one [`Event`]:
//! asking [`Driver::poll_event`], answering with [`Driver::write`] (the
//! server runs handlers and writes their replies; the client pairs replies
//! with requests). What a hand-written `Framed` loop does, the driver does
//! in the same order, and nothing more per frame:
//!
//! ```text
//!                 +---------------- poll_event ---------------------+
//!                 | 0. fast path: a frame buffered, no signal, room  |
//!                 |    -> on_frame -> Frame                          |
//!  Signal ------> | role bits -> on_signal; QUEUED -> on_queued      |
//!  (other tasks)  |    (the role fills the output: outbox, requests) |
//!                 | 1. a frame already buffered? -> Frame            |
//!                 | 2. flush the output (stall stamped once);        | --> Event
//!                 |    drained below half the budget -> on_queued    |
//!  socket <-----> | 3. read more -> Frame / on_stream / on_eof       |
//!  Sleep -------> | 4. deadlines: idle ticks, keepalive, stall,      |
//!                 |    hello, frame -> on_failure; the role's own    |
//!                 |    -> on_deadline                                |
//!                 | 5. about to wait -> the role's poll_wait         |
//!                 +--------------------------------------------------+
//!                    failures: on_failure -> End(the role's reason)
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

use std::ops::Deref;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use enchufe_framing::mux::{Header, Kind};
use enchufe_framing::{LengthPrefix, Next, OutFrame, Result, Split, Wire};

use crate::role::{Bare, Failure, Output, Role};
use crate::Signal;

/// The [`Signal`] bit that says frames wait in the role's queue (pushes,
/// requests queued by other tasks): [`Role::on_queued`]. Every other bit is
/// the role's own: [`Role::on_signal`].
pub const QUEUED: u8 = 1;

/// Most bytes [`Driver::poll_watching`] reads ahead while the role takes no
/// frames: enough to see a reset behind a few pipelined requests, small
/// next to the frame limit (a connection may hold a whole frame anyway).
/// 64 KiB: the size from which a frame gets its own buffer.
pub const WATCH_BOUND: usize = enchufe_framing::LARGE_FRAME;

/// One connection's I/O, signal and deadlines, and its role; see the
/// [module](self).
///
/// `S` is how the driver reaches its [`Signal`]: a reference (the server's
/// connection task borrows it from the connection) or an `Arc` (a client's
/// link shares it with its handles). `C` is the wire's codec ([`Split`]):
/// length-prefixed frames by default. `R` is the [`Role`]: [`Bare`] hands
/// every event on as it is.
pub struct Driver<Io, S, C = LengthPrefix, R = Bare> {
    wire: Wire<Io, C>,
    role: R,
    signal: S,
    /// Every deadline, on one `Sleep`.
    timer: Timer,
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
    /// Frames read so far (idleness is counted in them).
    activity: u64,
    /// Traffic counters (feature `metrics`), reported when the driver
    /// waits, when its timer fires and when it is dropped: per batch, not
    /// per frame.
    #[cfg(feature = "metrics")]
    meter: Option<crate::meter::Meter>,
}

#[cfg(feature = "metrics")]
impl<Io, S, C, R> Driver<Io, S, C, R> {
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
impl<Io, S, C, R> Drop for Driver<Io, S, C, R> {
    fn drop(&mut self) {
        self.report();
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin, S, C: Split, R> std::fmt::Debug for Driver<Io, S, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("queued", &self.wire.queued())
            .field("budget", &self.budget)
            .field("write_done", &self.write_done)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

impl<Io, S, C> Driver<Io, S, C, Bare>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    S: Deref<Target = Signal>,
    C: Split,
{
    /// A driver over `wire` with the [`Bare`] role, woken by `signal`, that
    /// stops reading while its output holds `budget` bytes or more.
    pub fn new(wire: Wire<Io, C>, signal: S, budget: usize, deadlines: Deadlines) -> Self {
        Driver::with_role(wire, signal, budget, deadlines, Bare)
    }
}

impl<Io, S, C, R> Driver<Io, S, C, R>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    S: Deref<Target = Signal>,
    C: Split,
    R: Role<Io, C>,
{
    /// A driver over `wire` for `role`, woken by `signal`, that stops
    /// reading while its output holds `budget` bytes or more.
    pub fn with_role(
        wire: Wire<Io, C>,
        signal: S,
        budget: usize,
        deadlines: Deadlines,
        role: R,
    ) -> Self {
        Driver {
            wire,
            role,
            signal,
            timer: Timer::new(&deadlines),
            budget,
            seen: 0,
            waiting: false,
            write_done: false,
            unflushed: false,
            busy: false,
            eof: false,
            activity: 0,
            #[cfg(feature = "metrics")]
            meter: None,
        }
    }

    /// The output, as the role's hooks see it, and the role.
    #[inline(always)]
    fn parts(&mut self) -> (&mut R, Output<'_, Io, C>) {
        let out = Output {
            wire: &mut self.wire,
            waiting: &mut self.waiting,
            done: self.write_done,
            budget: self.budget,
        };
        (&mut self.role, out)
    }

    /// Asks the role to fill the output now ([`Role::on_queued`]), as if
    /// frames had been queued; what it reports is dropped.
    pub fn fill(&mut self) {
        let (role, mut out) = self.parts();
        let _ = role.on_queued(&mut out);
    }

    /// The signal other tasks raise.
    pub fn signal(&self) -> &Signal {
        &self.signal
    }

    /// Lowers [`QUEUED`] before the role takes its queue: a frame queued
    /// from now on raises it again.
    pub fn take_queued(&mut self) {
        self.signal.take(QUEUED);
    }
    /// Bytes of output written and not yet flushed.
    pub fn queued(&self) -> usize {
        if self.write_done {
            0
        } else {
            self.wire.queued()
        }
    }

    /// Queues a frame for the other end.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] when it is over the frame limit (nothing
    /// queued). A frame written after the output is done is dropped
    /// silently: [`Failure::WriteFailed`] or [`Failure::Stalled`] said so.
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
    pub async fn event(&mut self, read: bool) -> Event<R::End> {
        std::future::poll_fn(|cx| self.poll_event(cx, read)).await
    }

    /// Moves the I/O forward and reports what needs the role's loop, once
    /// the role's hooks had their say. Frames are read only when `read`
    /// (the role has room for them), the other end has not closed, and the
    /// output holds less than the budget.
    ///
    /// The fast path, small enough to inline into a role's loop: a frame
    /// already buffered, no signal raised, the output with room (what the
    /// full loop would report first anyway).
    #[inline]
    pub fn poll_event(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event<R::End>> {
        let read = read && !self.eof;
        if read && self.signal.flags() == 0 && self.queued() < self.budget {
            match self.wire.next_frame() {
                Ok(Some(frame)) => return Poll::Ready(self.frame(frame)),
                Ok(None) => {}
                Err(e) => {
                    if let Some(event) = self.fail(Failure::ReadFailed(e)) {
                        return Poll::Ready(event);
                    }
                }
            }
        }
        self.poll_slow::<false>(cx, read)
    }

    /// A frame arrived: counted as activity, told to the role
    /// ([`Role::on_frame`]), handed to its loop.
    #[inline(always)]
    fn frame(&mut self, frame: BytesMut) -> Event<R::End> {
        self.activity += 1;
        let (role, mut out) = self.parts();
        role.on_frame(&mut out);
        Event::Frame(frame)
    }

    /// [`Driver::poll_event`] for a role that takes no frames now (a plain
    /// server's handler runs) but must know if the other end is gone: the
    /// socket is still read, into the buffer, up to [`WATCH_BOUND`] bytes.
    /// A reset or read error is [`Failure::ReadFailed`] at once; EOF (the
    /// other end half-closed, and may still wait for answers) is kept until
    /// the frames before it are taken, then reported as usual. Frames read
    /// ahead come out of the next `poll_event`, in order.
    pub fn poll_watching(&mut self, cx: &mut Context<'_>) -> Poll<Event<R::End>> {
        self.poll_slow::<true>(cx, false)
    }

    /// A failure, through the role.
    #[cold]
    fn fail(&mut self, failure: Failure) -> Option<Event<R::End>> {
        let (role, mut out) = self.parts();
        role.on_failure(failure, &mut out)
    }

    /// [`Driver::poll_event`] past its fast path, out of line so the fast
    /// path stays small enough to inline into the role's loop; watching
    /// the socket when `WATCH` (compiled away from the reading path).
    /// Whatever a hook consumes (it returns `None`), the loop goes on.
    #[inline(never)]
    fn poll_slow<const WATCH: bool>(
        &mut self,
        cx: &mut Context<'_>,
        read: bool,
    ) -> Poll<Event<R::End>> {
        macro_rules! hand {
            ($event:expr) => {
                match $event {
                    Some(event) => return Poll::Ready(event),
                    None => continue,
                }
            };
        }
        loop {
            // A plain load per call; the waker is registered only when the
            // driver is about to wait (below), not once per frame.
            let flags = self.signal.flags();
            let new = flags & !QUEUED & !self.seen;
            if new != 0 {
                self.seen |= new;
                let (role, mut out) = self.parts();
                hand!(role.on_signal(new, &mut out));
            }
            if flags & QUEUED != 0 && !self.write_done {
                let (role, mut out) = self.parts();
                hand!(role.on_queued(&mut out));
            }
            let room = self.queued() < self.budget;
            // Frames already read come first: their replies join this batch.
            if read && room {
                match self.wire.next_frame() {
                    Ok(Some(frame)) => return Poll::Ready(self.frame(frame)),
                    Ok(None) => {
                        if let Some(len) = self.wire.take_stream() {
                            self.activity += 1;
                            let (role, mut out) = self.parts();
                            hand!(role.on_stream(len, &mut out));
                        }
                    }
                    Err(e) => hand!(self.fail(Failure::ReadFailed(e))),
                }
            }
            if !self.write_done && (self.wire.queued() > 0 || self.unflushed) {
                self.unflushed = false;
                match self.wire.poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.timer.flushed(),
                    Poll::Ready(Err(e)) => {
                        self.write_done = true;
                        hand!(self.fail(Failure::WriteFailed(e)));
                    }
                    Poll::Pending => {
                        self.unflushed = true;
                        self.timer.note_stall(self.wire.written());
                    }
                }
                if self.waiting && self.wire.queued() < self.budget / 2 {
                    self.waiting = false;
                    let (role, mut out) = self.parts();
                    hand!(role.on_queued(&mut out));
                }
            }
            if read && self.queued() < self.budget && !self.eof && !self.wire.is_streaming() {
                match self.wire.poll_next(cx) {
                    Poll::Ready(Ok(Next::Frame(frame))) => return Poll::Ready(self.frame(frame)),
                    Poll::Ready(Ok(Next::Stream(len))) => {
                        self.activity += 1;
                        let (role, mut out) = self.parts();
                        hand!(role.on_stream(len, &mut out));
                    }
                    Poll::Ready(Ok(Next::Eof)) => {
                        self.eof = true;
                        let (role, mut out) = self.parts();
                        hand!(role.on_eof(&mut out));
                    }
                    Poll::Ready(Err(e)) => hand!(self.fail(Failure::ReadFailed(e))),
                    Poll::Pending => {}
                }
            }
            if WATCH {
                if let Err(e) = self.wire.watch(cx, WATCH_BOUND) {
                    hand!(self.fail(Failure::ReadFailed(e)));
                }
            }
            if self.timer.watches_frames() {
                // One clock read per wait, not per frame; a role that is
                // not reading (a handler runs) does not hold the other end
                // to the deadline.
                let partial = read && self.wire.has_partial_frame();
                self.timer.watch_partial(partial, self.activity);
            }
            if !self.timer.poll(cx) {
                // Register before waiting; a flag raised meanwhile means
                // another turn.
                if self.signal.poll(cx) != flags {
                    continue;
                }
                #[cfg(feature = "metrics")]
                self.report();
                let (role, mut out) = self.parts();
                if let Poll::Ready(end) = role.poll_wait(cx, &mut out) {
                    return Poll::Ready(Event::End(end));
                }
                return Poll::Pending;
            }
            match self.on_timer() {
                Some(Due::Failed(failure)) => hand!(self.fail(failure)),
                Some(Due::Deadline) => {
                    let (role, mut out) = self.parts();
                    hand!(role.on_deadline(&mut out));
                }
                None => {}
            }
        }
    }

    /// The timer fired: every deadline checked with one clock read, a
    /// keepalive ping written if one is due.
    fn on_timer(&mut self) -> Option<Due> {
        #[cfg(feature = "metrics")]
        self.report();
        let seen = Seen {
            written: self.wire.written(),
            partial: self.wire.has_partial_frame(),
            activity: self.activity,
            busy: self.busy,
        };
        let fired = self.timer.fire(&seen);
        if fired.ping {
            let ping = OutFrame::with_header(
                Header {
                    kind: Kind::Ping,
                    id: 0,
                },
                Bytes::new(),
            );
            let _ = self.write(&ping);
        }
        if let Some(Due::Failed(Failure::Stalled(_))) = fired.due {
            self.write_done = true;
        }
        fired.due
    }
}

mod controls;
mod ending;
mod timer;

pub use crate::role::Event;
pub use timer::Deadlines;
use timer::{Due, Seen, Timer};

#[cfg(test)]
mod tests;
