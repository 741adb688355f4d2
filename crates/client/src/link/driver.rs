//! The link's driver: the one task that owns a client connection's I/O.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::mux::{Header, Kind};
use enchufe_framing::session::{self, Inbound, Role};
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSender;
use tracing::{debug, trace};

use super::{flag, Pending, Shared};
use crate::error::{ended_error, Ended};
use crate::{Error, Result};

/// The link's one task.
pub(super) struct Driver<Io> {
    wire: Wire<Io>,
    shared: Arc<Shared>,
    multiplexed: bool,
    /// Plain profile: reply slots in the order their requests were written.
    pending: VecDeque<Pending>,
    /// Unsolicited frames for `recv`; bounded, so a client that does not
    /// read them stops the driver reading (backpressure to the server).
    incoming: PollSender<Result<BytesMut>>,
    /// An unsolicited frame waiting for room in `incoming`.
    held: Option<BytesMut>,
    /// Whether the error that ends the connection goes to `incoming` too.
    report_end: bool,
    /// The writing side is shut down (close() or the last handle dropped).
    write_closed: bool,
    eof: bool,
    /// Requests' deadlines, all in one timer, armed for the earliest known
    /// one (`armed`) and reset only when it fires or an earlier one comes.
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// The driver gave the scheduler one turn before taking a burst.
    yielded: bool,
}

/// Why the driver stops.
enum Stop {
    /// The connection ended this way; the socket is dropped.
    End(Ended),
    /// The server broke the protocol: hang up at once.
    Protocol(&'static str),
    /// A read or write failed.
    Failed(enchufe_framing::Error),
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Driver<Io> {
    pub(super) fn new(
        wire: Wire<Io>,
        shared: Arc<Shared>,
        multiplexed: bool,
        wiring: super::Wiring,
    ) -> Self {
        Driver {
            wire,
            shared,
            multiplexed,
            pending: VecDeque::new(),
            incoming: PollSender::new(wiring.incoming),
            held: None,
            report_end: wiring.report_end,
            write_closed: false,
            eof: false,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            yielded: false,
        }
    }

    pub(super) async fn run(mut self) {
        let stop = std::future::poll_fn(|cx| self.poll(cx)).await;
        let (how, report) = match stop {
            Stop::End(how) => (how, None),
            Stop::Protocol(what) => {
                debug!(what, "protocol violation; closing the connection");
                (
                    Ended::Error(Arc::new(enchufe_framing::Error::Malformed(what))),
                    Some(Error::Protocol(what)),
                )
            }
            Stop::Failed(e) => {
                debug!(error = %e, "connection failed");
                let e = Arc::new(e);
                (Ended::Error(e.clone()), Some(Error::from_shared(e)))
            }
        };
        debug!(how = ?how, "connection ended");
        self.shared.end(how.clone());
        for mut slot in self.pending.drain(..) {
            slot.answer(Err(ended_error(&how)));
        }
        if let (true, Some(error)) = (self.report_end, report) {
            // The caller of recv learns why, once.
            if let Some(tx) = self.incoming.get_ref() {
                let _ = tx.try_send(Err(error));
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Stop> {
        loop {
            let mut flags = self.shared.signal.flags();
            if flags & flag::QUEUED != 0 {
                if !self.yielded && self.wire.queued() == 0 {
                    // Woken by the first request of a burst: let the other
                    // tasks that are ready queue theirs too, so the burst
                    // leaves in one write instead of one each. One turn of
                    // the scheduler, once per batch.
                    self.yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.yielded = false;
                self.shared.signal.take(flag::QUEUED);
                // Taken: a QUEUED raised from here on must show as a change
                // when the flags are compared before waiting.
                flags &= !flag::QUEUED;
                self.take_queued();
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
            let reading = self.held.is_none() && !self.eof;
            // Frames already read first: their requests' replies batch up.
            if reading {
                match self.wire.next_frame() {
                    Ok(Some(frame)) => {
                        if let Err(stop) = self.dispatch(frame) {
                            return Poll::Ready(stop);
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Stop::Failed(e)),
                }
            }
            if !self.write_closed {
                if self.wire.queued() > 0 {
                    if let Poll::Ready(Err(e)) = self.wire.poll_flush(cx) {
                        return Poll::Ready(Stop::Failed(e));
                    }
                }
                let closing = flags & (flag::CLOSE | flag::DROPPED) != 0;
                if closing && self.wire.queued() == 0 && self.queue_is_drained() {
                    match self.wire.poll_shutdown(cx) {
                        Poll::Ready(result) => {
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
                            if flags & flag::DROPPED != 0 {
                                return Poll::Ready(Stop::End(Ended::Closed));
                            }
                            continue;
                        }
                        Poll::Pending => {}
                    }
                }
            } else if flags & flag::DROPPED != 0 {
                return Poll::Ready(Stop::End(Ended::Closed));
            }
            if reading {
                match self.wire.poll_frame(cx) {
                    Poll::Ready(Ok(Some(frame))) => {
                        if let Err(stop) = self.dispatch(frame) {
                            return Poll::Ready(stop);
                        }
                        continue;
                    }
                    Poll::Ready(Ok(None)) => {
                        self.eof = true;
                        return Poll::Ready(Stop::End(Ended::PeerClosed));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Stop::Failed(e)),
                    Poll::Pending => {}
                }
            }
            if self.armed.is_some() && self.timer.as_mut().poll(cx).is_ready() {
                self.expire();
                continue;
            }
            // Register before waiting; a flag raised meanwhile means another turn.
            if self.shared.signal.poll(cx) != flags {
                continue;
            }
            return Poll::Pending;
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
        let frames = std::mem::take(&mut self.shared.out().frames);
        self.shared.room.notify_waiters();
        for (frame, slot, deadline) in frames {
            if let Some(deadline) = deadline {
                if self.armed.map_or(true, |armed| deadline < armed) {
                    self.timer.as_mut().reset(deadline);
                    self.armed = Some(deadline);
                }
            }
            // Frames were checked against the limit when encoded
            // (`Client::body`), so this write does not fail.
            if let Err(e) = self.wire.write(&frame) {
                debug!(error = %e, "frame refused by the writer");
                if let Some(mut slot) = slot {
                    slot.answer(Err(e.into()));
                }
                continue;
            }
            if let Some(slot) = slot {
                self.pending.push_back(slot);
            }
        }
    }

    /// The timer fired: every request past its deadline gets
    /// `Error::Timeout` (a multiplexed one is cancelled at the server; a
    /// plain one keeps its place in line for its late reply), and the timer
    /// is re-armed for the earliest deadline left.
    fn expire(&mut self) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut cancels = Vec::new();
        {
            self.shared.by_id.retain(|id, slot| {
                if slot.deadline <= now {
                    slot.answer(Err(Error::Timeout(slot.timeout)));
                    cancels.push(id);
                    false
                } else {
                    next = Some(next.map_or(slot.deadline, |n| n.min(slot.deadline)));
                    true
                }
            });
        }
        for slot in self.pending.iter_mut().filter(|slot| slot.reply.is_some()) {
            if slot.deadline <= now {
                slot.answer(Err(Error::Timeout(slot.timeout)));
            } else {
                next = Some(next.map_or(slot.deadline, |n| n.min(slot.deadline)));
            }
        }
        for id in cancels {
            trace!(id, "request timed out; cancel sent");
            let cancel = OutFrame::with_header(
                Header {
                    kind: Kind::Cancel,
                    id,
                },
                Bytes::new(),
            );
            if !self.write_closed {
                let _ = self.wire.write(&cancel);
            }
        }
        // Requests still in the shared queue have deadlines the driver has
        // not seen: they re-arm the timer when taken.
        self.armed = next;
        if let Some(next) = next {
            self.timer.as_mut().reset(next);
        }
    }

    /// Gives one frame to the request it answers, or to `recv`.
    fn dispatch(&mut self, frame: BytesMut) -> std::result::Result<(), Stop> {
        let unsolicited = if self.multiplexed {
            match session::classify(frame, Role::Client) {
                Ok(Inbound::Reply { id, outcome }) => {
                    let outcome =
                        outcome.map_err(|(code, message)| Error::Remote { code, message });
                    match self.shared.by_id.take(id) {
                        Some(mut slot) => slot.answer(outcome),
                        // Its request timed out or was dropped (and
                        // cancelled): nobody waits for this any more.
                        None => trace!(id, "reply for an abandoned request dropped"),
                    }
                    return Ok(());
                }
                Ok(Inbound::Push(body)) => body,
                Ok(_) => return Err(Stop::Protocol("the server sent a client-only kind")),
                Err(what) => return Err(Stop::Protocol(what)),
            }
        } else {
            match self.pending.pop_front() {
                // A timed-out request's late reply is dropped here.
                Some(mut slot) => {
                    slot.answer(Ok(frame));
                    return Ok(());
                }
                None => frame,
            }
        };
        self.held = Some(unsolicited);
        Ok(())
    }
}
