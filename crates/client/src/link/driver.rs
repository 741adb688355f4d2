//! The link's driver: the one task that owns a client connection's I/O,
//! on the engine's driver with the client's role ([`LinkRole`]).
//!
//! ```text
//!  handles --Shared queue + Signal--> engine Driver <--> socket
//!                                      |  hooks: signal bits, EOF,
//!                                      |  failures (silence) -> LinkRole
//!                                      v  Event: Frame, Queued, Deadline
//!                          this loop: pair replies, take the queue,
//!                          stream bodies, expire requests, half-close
//! ```

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use enchufe_engine::driver::{self, Deadlines, Event};
use enchufe_engine::role::{self as engine, Failure, Output};
use enchufe_engine::Signal;
use enchufe_framing::{LengthPrefix, Malformed, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::PollSender;
use tracing::debug;

use super::permits::Permits;
use super::shared::{flag, Outgoing, Pending, QueueItem, Shared, Slot};
use super::stream::StreamOut;
use super::window::Window;
use super::wiring::Wiring;
use crate::error::{ended_error, Ended};
use crate::{Error, Result};

#[cfg(target_os = "linux")]
mod file;
mod replies;
mod stream;

#[cfg(target_os = "linux")]
pub(super) use file::is_tcp;

/// How the driver reaches the link's signal: through the state it shares
/// with the handles, with no allocation of its own.
struct LinkSignal(Arc<Shared>);

impl Deref for LinkSignal {
    type Target = Signal;

    fn deref(&self) -> &Signal {
        &self.0.signal
    }
}

/// The link's one task: the connection driver every role shares, with the
/// client's role, plus the loop of what only a client's link does (pair
/// replies with requests, hand pushes to `recv`, keep request deadlines,
/// half-close on `close()`).
pub(super) struct Driver<Io> {
    core: driver::Driver<Io, LinkSignal, LengthPrefix, LinkRole>,
    shared: Arc<Shared>,
    multiplexed: bool,
    /// Plain profile, until the first frame: that frame is checked for a
    /// multiplexed hello (a server of the other profile), so that it is
    /// never taken for a reply.
    check_first: bool,
    /// Unsolicited frames for `recv`; bounded, so a client that does not
    /// read them stops the driver reading (backpressure to the server).
    incoming: PollSender<Result<BytesMut>>,
    /// An unsolicited frame waiting for room in `incoming`.
    held: Option<BytesMut>,
    /// Whether the error that ends the connection goes to `incoming` too.
    report_end: bool,
    /// The writing side is shut down.
    write_closed: bool,
    /// The driver gave the scheduler one turn before taking a burst.
    yielded: bool,
    /// A streamed frame being written, and its body bytes still to come:
    /// nothing else is written until it is done.
    sending: Option<(StreamOut, u64)>,
    /// A file region being sent with `sendfile`, after its frame's head:
    /// nothing else is written until it is done.
    #[cfg(target_os = "linux")]
    filing: Option<crate::region::Sending>,
    /// The `max_in_flight` places, for those the lanes' replies free.
    in_flight: Arc<Permits>,
    /// Places among `max_in_flight` that lane replies freed since the
    /// driver last waited: given back in one step before it waits again.
    freed: usize,
    /// Plain: the window of the pipeline batch being taken from the queue
    /// (its first request brings it; the others follow it).
    batch: Option<Arc<Window>>,
    /// The lane the last lane reply went to: consecutive replies to one
    /// pipeline take no lock on the lanes, and wake its reader once.
    lane: Option<LastLane>,
    /// The shared queue's last batch, emptied: swapped in for the next, so
    /// its room (at most `outbound_queue` frames) is kept.
    taken: VecDeque<QueueItem>,
    /// This connection in the `metrics` gauges, until it ends.
    #[cfg(feature = "metrics")]
    open: Option<enchufe_engine::meter::Open>,
}

/// An entry of the plain profile's line of replies.
enum InLine {
    /// A request's own slot.
    One(Pending),
    /// Consecutive requests of a plain pipeline's batch.
    Run(Run),
}

/// Requests of one pipeline written one after the other with one deadline:
/// their replies come in line and go to consecutive places of its window.
/// The run holds their places among `max_in_flight`, one per reply owed.
struct Run {
    window: Arc<Window>,
    /// The place of the next reply.
    next: u64,
    /// Replies owed.
    left: usize,
    deadline: Option<Instant>,
    /// Its places were answered with a timeout; the late replies are
    /// still owed, and dropped as they come.
    expired: bool,
}

impl Run {
    /// Answers every place whose reply is still owed with `error()`.
    fn fail(&self, error: impl Fn() -> Error) {
        for seq in self.next..self.next + self.left as u64 {
            self.window.fill(seq, Err(error()));
        }
    }
}

/// The lane the driver's last lane reply went to.
struct LastLane {
    /// Its ids' high half.
    key: u64,
    /// Its window. A lane closed since is harmless here: its window was
    /// emptied and takes no reply.
    window: Arc<Window>,
    /// Its oldest place was answered since its reader was last woken.
    wake: bool,
}

/// Most places among `max_in_flight` that lane replies free before they
/// are given back (and the reader woken), when the driver has not waited
/// meanwhile: a pipeline's depth is typically 16-64, so a read's replies
/// go back in one step.
const RELEASE_BATCH: usize = 64;

/// Most output a streamed frame's chunks fill before the driver waits for
/// the socket: with the chunks waiting in the channel, what sending a frame
/// of any length costs in memory.
const STREAM_OUTPUT: usize = 256 * 1024;

/// The client's [`Role`](engine::Role): what its link makes of the signal's bits, the
/// other end's EOF and the driver's failures; frames, the queue and the
/// request deadlines go to the link's loop, which answers them with the
/// driver's writes.
struct LinkRole {
    shared: Arc<Shared>,
    /// Plain profile: reply slots in the order their requests were written.
    pending: VecDeque<InLine>,
    /// `Config::silence_timeout`: the core's idle deadline, acted on only
    /// while a reply has been awaited at least this long.
    silence: Option<Duration>,
    /// `close()` was called or the last handle dropped: flush, half-close.
    closing: bool,
    /// The last handle is gone: stop once the writing side is closed.
    dropped: bool,
}

impl<Io> engine::Role<Io, LengthPrefix> for LinkRole {
    type End = Stop;

    fn on_eof(&mut self, _: &mut Output<'_, Io, LengthPrefix>) -> Option<Event<Stop>> {
        Some(Event::End(Stop::End(Ended::PeerClosed)))
    }

    fn on_signal(&mut self, bits: u8, _: &mut Output<'_, Io, LengthPrefix>) -> Option<Event<Stop>> {
        self.closing |= bits & (flag::CLOSE | flag::DROPPED) != 0;
        self.dropped |= bits & flag::DROPPED != 0;
        // The loop looks at them (stop, half-close).
        Some(Event::Signal(bits))
    }

    fn on_failure(
        &mut self,
        failure: Failure,
        _: &mut Output<'_, Io, LengthPrefix>,
    ) -> Option<Event<Stop>> {
        match failure {
            Failure::ReadFailed(e) | Failure::WriteFailed(e) => Some(Event::End(Stop::Failed(e))),
            // Nothing arrived for the silence timeout (the core's idle
            // deadline). Dead only if a reply has been awaited all that
            // time: an idle link, or a request just sent, is not.
            Failure::IdleTimeout if self.awaited_longer_than_silence() => {
                debug!(silence = ?self.silence, "no frame while replies were awaited; dropping the connection");
                Some(Event::End(Stop::End(Ended::IdleTimeout)))
            }
            // No hello, frame or write deadline is set on a client link.
            _ => None,
        }
    }
}

impl LinkRole {
    /// Whether the oldest request awaiting a reply was sent at least the
    /// silence timeout ago. Runs only when the silence deadline fires.
    fn awaited_longer_than_silence(&self) -> bool {
        let Some(silence) = self.silence else {
            return false;
        };
        let Some(since) = Instant::now().checked_sub(silence) else {
            return false;
        };
        // A slot's send time is its deadline less its timeout.
        let sent_before = |deadline: Instant, timeout: Duration| {
            deadline
                .checked_sub(timeout)
                .is_some_and(|sent| sent <= since)
        };
        let mut old = self.pending.iter().any(|entry| match entry {
            InLine::One(slot) => sent_before(slot.deadline, slot.timeout),
            InLine::Run(run) => run
                .deadline
                .is_some_and(|deadline| sent_before(deadline, run.window.timeout())),
        });
        if !old {
            self.shared.by_id.retain(|_, slot| {
                old |= sent_before(slot.deadline, slot.timeout);
                true
            });
        }
        old || self.shared.lanes.sent_before(since)
    }
}

/// Why the driver stops.
pub(super) enum Stop {
    /// The connection ended this way; the socket is dropped.
    End(Ended),
    /// The server broke the protocol: hang up at once.
    Protocol(Malformed),
    /// A read or write failed.
    Failed(enchufe_framing::Error),
}

impl<Io: AsyncRead + AsyncWrite + Unpin + 'static> Driver<Io> {
    pub(super) fn new(
        wire: Wire<Io>,
        shared: Arc<Shared>,
        in_flight: Arc<Permits>,
        multiplexed: bool,
        silence: Option<Duration>,
        wiring: Wiring,
    ) -> Self {
        // No byte budget: what a client writes is bounded by its queue and
        // its in-flight limit. Request deadlines are the driver's own.
        let role = LinkRole {
            shared: shared.clone(),
            pending: VecDeque::new(),
            silence,
            closing: false,
            dropped: false,
        };
        #[allow(unused_mut)]
        let mut core = driver::Driver::with_role(
            wire,
            LinkSignal(shared.clone()),
            usize::MAX,
            Deadlines {
                idle: silence,
                ..Deadlines::default()
            },
            role,
        );
        #[cfg(feature = "metrics")]
        {
            let meter = enchufe_engine::meter::Meter::new("client");
            if multiplexed {
                // `Link::start` read the server's hello before this driver
                // began counting frames (the wire counted its bytes).
                meter.received_before(1);
            }
            core.set_meter(meter);
        }
        Driver {
            core,
            shared,
            multiplexed,
            check_first: !multiplexed,
            incoming: PollSender::new(wiring.incoming),
            held: None,
            report_end: wiring.report_end,
            write_closed: false,
            yielded: false,
            sending: None,
            #[cfg(target_os = "linux")]
            filing: None,
            in_flight,
            freed: 0,
            batch: None,
            lane: None,
            taken: VecDeque::new(),
            #[cfg(feature = "metrics")]
            open: Some(enchufe_engine::meter::Open::new("client")),
        }
    }

    /// Ends the link once [`Driver::poll`] has stopped: every request
    /// still awaiting a reply gets why, and so does `recv` if it asked.
    pub(super) fn finish(mut self, stop: Stop) {
        let (how, report) = match stop {
            Stop::End(how) => (how, None),
            Stop::Protocol(what) => {
                debug!(%what, "protocol violation; closing the connection");
                let violation = Arc::new(enchufe_framing::Error::Malformed(what));
                (
                    Ended::Error(violation.clone()),
                    Some(Error::Framing(violation)),
                )
            }
            Stop::Failed(e) => {
                debug!(error = %e, "connection failed");
                let e = Arc::new(e);
                (Ended::Error(e.clone()), Some(Error::from_shared(e)))
            }
        };
        debug!(how = ?how, "connection ended");
        #[cfg(feature = "metrics")]
        if let Some(open) = self.open.take() {
            open.close(&how, |e| enchufe_engine::meter::error_kind(e));
        }
        self.release_freed();
        self.lane = None;
        self.shared.end(how.clone());
        for entry in self.core.role_mut().pending.drain(..) {
            match entry {
                InLine::One(mut slot) => slot.answer(Err(ended_error(&how))),
                InLine::Run(run) => {
                    run.fail(|| ended_error(&how));
                    self.in_flight.release(run.left);
                }
            }
        }
        if let (true, Some(error)) = (self.report_end, report) {
            // The caller of recv learns why, once.
            if let Some(tx) = self.incoming.get_ref() {
                let _ = tx.try_send(Err(error));
            }
        }
    }

    /// Moves the connection forward until it waits (or stops, and then is
    /// not polled again). Every waker it registers is `cx`'s: the driver
    /// task's, wherever it is polled from ([`super::driving`]).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        loop {
            if self.core.role().dropped && self.write_closed {
                return Poll::Ready(Stop::End(Ended::Closed));
            }
            if self.sending.is_some() {
                if let Err(stop) = self.pump_stream(cx) {
                    return Poll::Ready(stop);
                }
            }
            #[cfg(target_os = "linux")]
            if self.filing.is_some() {
                if let Err(stop) = self.pump_file(cx) {
                    return Poll::Ready(stop);
                }
            }
            // Unsolicited frames wait for room in `incoming` before anything
            // more is read.
            if let Some(frame) = self.held.take() {
                match self.incoming.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {
                        let _ = self.incoming.send_item(Ok(frame));
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Stop::End(Ended::Closed)),
                    Poll::Pending => self.held = Some(frame),
                }
            }
            let event = match self.core.poll_event(cx, self.held.is_none()) {
                Poll::Ready(event) => event,
                Poll::Pending => {
                    // The output drained below the stream's share while the
                    // driver looked elsewhere: more chunks, or wait for them
                    // (their channel's waker is registered then).
                    if self.sending.is_some() && self.core.queued() < STREAM_OUTPUT {
                        let before = self.core.queued();
                        if let Err(stop) = self.pump_stream(cx) {
                            return Poll::Ready(stop);
                        }
                        if self.core.queued() != before || self.sending.is_none() {
                            continue;
                        }
                    }
                    // The output before a file region is flushed: send the
                    // region, or wait for the socket (its waker is
                    // registered then).
                    #[cfg(target_os = "linux")]
                    if self.filing.is_some() {
                        if let Err(stop) = self.pump_file(cx) {
                            return Poll::Ready(stop);
                        }
                        if self.filing.is_none() {
                            continue;
                        }
                    }
                    self.release_freed();
                    // Everything is flushed or waits on the socket, and
                    // nothing more is readable: the moment to half-close.
                    if self.core.role().closing && !self.write_closed && self.can_half_close() {
                        if let Poll::Ready(result) = self.core.poll_shutdown(cx) {
                            self.half_closed(result);
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
            };
            match event {
                Event::Frame(frame) => {
                    if let Err(stop) = self.dispatch(frame) {
                        return Poll::Ready(stop);
                    }
                }
                Event::Queued if self.holds_queue() => {
                    // The queue waits for the streamed frame or the file
                    // region to be written; its end raises the flag again.
                    self.core.take_queued();
                }
                Event::Queued => {
                    // A pipeline queues its burst whole: nothing to wait for.
                    let whole = self.shared.signal.take(flag::WHOLE);
                    if !whole && !self.yielded && self.core.queued() == 0 {
                        // Woken by the first request of a burst: let the
                        // other tasks that are ready queue theirs too, so the
                        // burst leaves in one write instead of one each. One
                        // turn of the scheduler, once per batch.
                        self.yielded = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    self.yielded = false;
                    self.core.take_queued();
                    self.take_queued();
                }
                Event::Deadline => self.expire(),
                Event::End(stop) => return Poll::Ready(stop),
                // Signal bits (the role took them: `closing`, `dropped`,
                // looked at above) and EOF (an `End`) are the role's.
                _ => {}
            }
        }
    }

    /// Whether the output is flushed and nothing waits in the shared queue.
    fn can_half_close(&self) -> bool {
        self.core.queued() == 0 && !self.holds_queue() && self.queue_is_drained()
    }

    /// Whether a streamed frame or a file region is being written: nothing
    /// else may go out until it is done.
    pub(super) fn holds_queue(&self) -> bool {
        #[cfg(target_os = "linux")]
        if self.filing.is_some() {
            return true;
        }
        self.sending.is_some()
    }

    /// The writing side is shut down: tell the `close()` callers how.
    fn half_closed(&mut self, result: enchufe_framing::Result<()>) {
        debug!("sending side closed");
        self.write_closed = true;
        let closers = std::mem::take(&mut self.shared.out().close);
        let result = result.map_err(Arc::new);
        for closer in closers {
            let _ = closer.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::Framing(e.clone())),
            });
        }
    }

    /// Whether nothing waits in the shared queue.
    fn queue_is_drained(&self) -> bool {
        self.shared.out().frames.is_empty()
    }

    /// Moves queued frames into the write buffer, registering plain
    /// requests' slots in write order.
    fn take_queued(&mut self) {
        if self.write_closed {
            return;
        }
        // The queue is swapped with the one taken last time, empty: neither
        // is freed and grown again for each batch.
        let mut frames = std::mem::take(&mut self.taken);
        std::mem::swap(&mut self.shared.out().frames, &mut frames);
        self.shared.room.notify_waiters();
        while let Some((item, slot, deadline)) = frames.pop_front() {
            let written = match item {
                Outgoing::Frame(frame) => {
                    self.core.write(&frame).map_err(|e| (Error::from(e), None))
                }
                #[cfg(target_os = "linux")]
                Outgoing::File(file) => self.start_file(file),
                Outgoing::Stream(stream) => {
                    self.start_stream(stream);
                    // What was queued after it waits for its end.
                    let mut out = self.shared.out();
                    while let Some(item) = frames.pop_back() {
                        out.frames.push_front(item);
                    }
                    drop(out);
                    self.taken = frames;
                    return;
                }
            };
            if let Some(deadline) = deadline {
                if self.core.deadline().is_none_or(|armed| deadline < armed) {
                    self.core.set_deadline(Some(deadline));
                }
            }
            let slot = match slot {
                Some(Slot::LaneFirst(window, seq)) => {
                    self.batch = Some(window);
                    Some(Slot::LaneNext(seq))
                }
                other => other,
            };
            // Frames were checked against the limit when encoded
            // (`Client::body`), so this write does not fail; a file region
            // the file no longer holds is refused here.
            if let Err((e, id)) = written {
                debug!(error = %e, "frame refused by the writer");
                match slot {
                    Some(Slot::One(mut slot)) => slot.answer(Err(e)),
                    Some(Slot::LaneNext(seq)) => {
                        if let Some(window) = &self.batch {
                            window.fill(seq, Err(e));
                            window.release(1);
                        }
                    }
                    _ => {
                        // Multiplexed: the request's slot waits by its id.
                        if let Some(mut slot) = id.and_then(|id| self.shared.by_id.take(id)) {
                            slot.answer(Err(e));
                        }
                    }
                }
                continue;
            }
            match slot {
                Some(Slot::One(slot)) => self.core.role_mut().pending.push_back(InLine::One(slot)),
                Some(Slot::LaneNext(seq)) => self.in_line(seq, deadline),
                _ => {}
            }
            if self.holds_queue() {
                // A file region goes out next: what was queued after it
                // waits for its end.
                let mut out = self.shared.out();
                while let Some(item) = frames.pop_back() {
                    out.frames.push_front(item);
                }
                drop(out);
                break;
            }
        }
        self.taken = frames;
    }

    /// A plain pipeline's request `seq` of the batch being taken was
    /// written: its reply is owed in line, by the run it continues or by a
    /// new one.
    fn in_line(&mut self, seq: u64, deadline: Option<Instant>) {
        let Some(window) = &self.batch else {
            return;
        };
        let pending = &mut self.core.role_mut().pending;
        if let Some(InLine::Run(run)) = pending.back_mut() {
            if Arc::ptr_eq(&run.window, window)
                && run.next + run.left as u64 == seq
                && run.deadline == deadline
                && !run.expired
            {
                run.left += 1;
                return;
            }
        }
        pending.push_back(InLine::Run(Run {
            window: window.clone(),
            next: seq,
            left: 1,
            deadline,
            expired: false,
        }));
    }
}
