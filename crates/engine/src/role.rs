//! Roles: what a connection is for, as one trait the one [driver](crate::driver)
//! calls. The driver moves the bytes and keeps the deadlines; whenever
//! something happens that is not a frame handed out on its fast path, it
//! asks its [`Role`] what that means (hyper's `Dispatch` in
//! `proto/h1/dispatch.rs` is the model: one dispatcher, a role per side).
//!
//! ```text
//!                      Driver (one loop, one Event)
//!   frame ---------> on_frame ----------------------> Event::Frame
//!   EOF / stream --> on_eof / on_stream ------------> Event::Eof / Stream
//!   QUEUED bit, output below half the budget
//!                --> on_queued: fill the output ----> (consumed) / Event::Queued
//!   role bits ----> on_signal ----------------------> Event::Signal / End
//!   role deadline -> on_deadline -------------------> Event::Deadline / End
//!   failures, timeouts -> on_failure ---------------> Event::End(role's reason)
//!   about to wait -> poll_wait --------------------> Pending / End
//! ```
//!
//! Every hook returns what the role's own loop is told: `Some(event)`, or
//! `None` when the role dealt with it (the driver goes on). A role is a
//! generic parameter of the driver, so its hooks inline into the driver's
//! loop: nothing is translated or dispatched dynamically per frame.
//!
//! The roles: the server's connection (plain and multiplexed profiles),
//! the client's link, and HTTP/1.1; [`Bare`] hands every event on as it is
//! (the driver's own tests, and any loop that wants the raw failures).

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use enchufe_framing::{Error, OutFrame, Result, Wire};

/// Why the driver cannot go on as it was: reading or writing failed, or a
/// deadline passed. A role turns it into its own reason to end
/// ([`Role::on_failure`]).
#[derive(Debug)]
pub enum Failure {
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

/// What needs the role's loop: the driver's one event, for every role.
/// What the driver cannot go on with reaches the role's
/// [`on_failure`](Role::on_failure) first and comes out as [`Event::End`]
/// with the role's reason (`E`, [`Role::End`](Role::End)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<E = Failure> {
    /// A complete frame arrived.
    Frame(BytesMut),
    /// The other end closed its writing side between frames.
    Eof,
    /// A streamed frame of this many body bytes began (a wire with
    /// [`Config::max_stream_length`](enchufe_framing::Config::max_stream_length) on):
    /// take its body with [`Driver::poll_chunk`](crate::driver::Driver::poll_chunk) before reading again.
    Stream(u64),
    /// Frames wait in the role's queue and its [`Role::on_queued`](Role::on_queued) left
    /// them to its loop: take them with [`Driver::take_queued`](crate::driver::Driver::take_queued) and
    /// [`Driver::write`](crate::driver::Driver::write).
    Queued,
    /// These role bits of the signal were raised (each reported once), or
    /// (`0`) the role's state changed: look at it.
    Signal(u8),
    /// The role's own deadline ([`Driver::set_deadline`](crate::driver::Driver::set_deadline)) passed.
    Deadline,
    /// The connection (or its output) cannot go on: why, in the role's
    /// words.
    End(E),
}

/// The driver's output, as a role's hook sees it: it may queue frames
/// (an outbox drained into it) and read how much is held.
#[derive(Debug)]
pub struct Output<'a, Io, C> {
    pub(crate) wire: &'a mut Wire<Io, C>,
    pub(crate) waiting: &'a mut bool,
    pub(crate) done: bool,
    pub(crate) budget: usize,
}

impl<Io, C> Output<'_, Io, C>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    C: enchufe_framing::Split,
{
    /// Bytes of output written and not yet flushed (zero once the output
    /// is done).
    #[inline]
    pub fn queued(&self) -> usize {
        if self.done {
            0
        } else {
            self.wire.queued()
        }
    }

    /// The byte budget past which the driver reads no frame.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Whether writing failed, stalled or was shut down.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Queues a frame; dropped silently once the output is done.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] when it is over the frame limit.
    pub fn write(&mut self, frame: &OutFrame) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.wire.write(frame)
    }

    /// Frames still wait in the role's queue: [`Role::on_queued`] is called
    /// again once the output drained below half the budget.
    pub fn set_waiting(&mut self, waiting: bool) {
        *self.waiting = waiting;
    }

    /// The connection's I/O.
    pub fn io(&self) -> &Io {
        self.wire.get_ref()
    }

    /// The framed I/O (its codec's state: what it refused, say).
    pub fn wire(&self) -> &Wire<Io, C> {
        self.wire
    }
}

/// What a connection is for: the hooks the [driver](crate::driver::Driver)
/// calls; see the [module](self). Each hook but [`Role::on_failure`] has a
/// default that hands the event on unchanged.
pub trait Role<Io, C> {
    /// Why the connection ends, in the role's words
    /// ([`Event::End`]; the server's `Disconnect`, the client's `Ended`).
    type End;

    /// A frame arrived and is about to be handed out (on the fast path
    /// too: keep it small).
    #[inline(always)]
    fn on_frame(&mut self, out: &mut Output<'_, Io, C>) {
        let _ = out;
    }

    /// The other end closed its writing side between frames.
    fn on_eof(&mut self, out: &mut Output<'_, Io, C>) -> Option<Event<Self::End>> {
        let _ = out;
        Some(Event::Eof)
    }

    /// A streamed frame of `len` body bytes began.
    fn on_stream(&mut self, len: u64, out: &mut Output<'_, Io, C>) -> Option<Event<Self::End>> {
        let _ = out;
        Some(Event::Stream(len))
    }

    /// Frames wait in the role's queue (the `QUEUED` bit, or the output
    /// drained below half the budget while [waiting](Output::set_waiting)):
    /// fill the output. A role that fills it here lowers the bit
    /// ([`Signal::take`](crate::Signal::take)) and returns `None`.
    fn on_queued(&mut self, out: &mut Output<'_, Io, C>) -> Option<Event<Self::End>> {
        let _ = out;
        Some(Event::Queued)
    }

    /// These role bits of the signal were raised (each reported once).
    fn on_signal(&mut self, bits: u8, out: &mut Output<'_, Io, C>) -> Option<Event<Self::End>> {
        let _ = out;
        Some(Event::Signal(bits))
    }

    /// The role's own deadline ([`Driver::set_deadline`](crate::driver::Driver::set_deadline))
    /// passed.
    fn on_deadline(&mut self, out: &mut Output<'_, Io, C>) -> Option<Event<Self::End>> {
        let _ = out;
        Some(Event::Deadline)
    }

    /// Reading or writing failed, or a deadline of the driver's passed.
    fn on_failure(
        &mut self,
        failure: Failure,
        out: &mut Output<'_, Io, C>,
    ) -> Option<Event<Self::End>>;

    /// The driver is about to wait: nothing more to report. `Ready` ends
    /// the connection with that reason (a watch of the role's own fired).
    #[inline]
    fn poll_wait(&mut self, cx: &mut Context<'_>, out: &mut Output<'_, Io, C>) -> Poll<Self::End> {
        let _ = (cx, out);
        Poll::Pending
    }
}

/// The role that hands every event on as it is, failures as
/// [`Event::End`]: the driver's own tests, and loops that look at each
/// failure themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bare;

impl<Io, C> Role<Io, C> for Bare {
    type End = Failure;

    fn on_failure(
        &mut self,
        failure: Failure,
        _: &mut Output<'_, Io, C>,
    ) -> Option<Event<Failure>> {
        Some(Event::End(failure))
    }
}
