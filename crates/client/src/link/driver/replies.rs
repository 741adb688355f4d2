//! Replies on their way in: each frame read paired with its request (in
//! line for the plain profile, by id for the multiplexed one, by place for
//! a pipeline's lane), pushes handed on, and requests past their deadline
//! answered with a timeout.

use bytes::{Bytes, BytesMut};
use enchufe_engine::session::{self, Inbound, Role};
use enchufe_framing::mux::{self, Header, Kind, Violation};
use enchufe_framing::{Malformed, OutFrame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::trace;

use super::{Driver, InLine, LastLane, Run, Stop, RELEASE_BATCH};
use crate::link::lanes::is_lane;
use crate::{Error, Result};

impl<Io: AsyncRead + AsyncWrite + Unpin + 'static> Driver<Io> {
    /// The timer fired: every request past its deadline gets
    /// `Error::Timeout` (a multiplexed one is cancelled at the server; a
    /// plain one keeps its place in line for its late reply), and the timer
    /// is re-armed for the earliest deadline left.
    pub(super) fn expire(&mut self) {
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
        self.shared
            .lanes
            .expire(now, &mut next, |id| cancels.push(id));
        for entry in self.core.role_mut().pending.iter_mut() {
            let (deadline, timeout) = match entry {
                InLine::One(slot) if slot.reply.is_some() => (slot.deadline, slot.timeout),
                InLine::Run(Run {
                    deadline: Some(deadline),
                    expired: false,
                    window,
                    ..
                }) => (*deadline, window.timeout()),
                _ => continue,
            };
            if deadline > now {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                continue;
            }
            match entry {
                InLine::One(slot) => slot.answer(Err(Error::Timeout(timeout))),
                // The late replies keep their places in line (and among
                // `max_in_flight`) until they come.
                InLine::Run(run) => {
                    run.fail(|| Error::Timeout(timeout));
                    run.expired = true;
                }
            }
        }
        for id in cancels {
            if self.holds_queue() {
                // Not inside a file region's bytes: after them.
                self.shared.queue_cancel(id);
                continue;
            }
            trace!(id, "request timed out; cancel sent");
            let cancel = OutFrame::with_header(
                Header {
                    kind: Kind::Cancel,
                    id,
                },
                Bytes::new(),
            );
            let _ = self.core.write(&cancel);
        }
        // Requests still in the shared queue have deadlines the driver has
        // not seen: they re-arm the timer when taken.
        self.core.set_deadline(next);
    }

    /// A pipeline's reply: an index into its lane's window.
    pub(super) fn answer_lane(&mut self, id: u64, outcome: Result<BytesMut>) {
        let key = id >> 32;
        if !matches!(&self.lane, Some(lane) if lane.key == key) {
            // The last lane's reader learns of its replies before another
            // lane is looked up.
            self.release_freed();
            match self.shared.lanes.window(id) {
                Some(window) => {
                    self.lane = Some(LastLane {
                        key,
                        window,
                        wake: false,
                    })
                }
                // Its pipeline is gone (and cancelled it).
                None => return,
            }
        }
        let Some(lane) = self.lane.as_mut() else {
            return;
        };
        if let Some(oldest) = lane.window.fill_lane(id as u32, outcome) {
            lane.wake |= oldest;
            self.freed += 1;
            if self.freed >= RELEASE_BATCH {
                self.release_freed();
            }
        }
    }

    /// Gives back the places among `max_in_flight` that lane replies freed,
    /// then wakes the last lane's reader if its oldest place was answered:
    /// it finds the read's replies all there, and their places free.
    pub(super) fn release_freed(&mut self) {
        self.in_flight.release(std::mem::take(&mut self.freed));
        if let Some(lane) = self.lane.as_mut() {
            if std::mem::take(&mut lane.wake) {
                lane.window.wake_reader();
            }
        }
    }

    /// Gives one frame to the request it answers, or to `recv`.
    pub(super) fn dispatch(&mut self, frame: BytesMut) -> std::result::Result<(), Stop> {
        let unsolicited = if self.multiplexed {
            match session::classify(frame, Role::Client) {
                Ok(Inbound::Reply { id, outcome }) => {
                    let outcome =
                        outcome.map_err(|(code, message)| Error::Remote { code, message });
                    if is_lane(id) {
                        self.answer_lane(id, outcome);
                        return Ok(());
                    }
                    match self.shared.by_id.take(id) {
                        Some(mut slot) => slot.answer(outcome),
                        // Its request timed out or was dropped (and
                        // cancelled): nobody waits for this any more.
                        None => trace!(id, "reply for an abandoned request dropped"),
                    }
                    return Ok(());
                }
                Ok(Inbound::Push(body)) => body,
                Ok(_) => return Err(Stop::Protocol(Malformed::Mux(Violation::NoRule))),
                Err(violation) => return Err(Stop::Protocol(Malformed::Mux(violation))),
            }
        } else {
            if self.check_first {
                self.check_first = false;
                if mux::is_hello(&frame) {
                    let mismatch = enchufe_framing::Error::ProfileMismatch(mux::Mismatch::GotHello);
                    return Err(Stop::Failed(mismatch));
                }
            }
            let pending = &mut self.core.role_mut().pending;
            match pending.front_mut() {
                Some(InLine::Run(run)) => {
                    // A timed-out place takes no late reply: it is dropped.
                    run.window.fill(run.next, Ok(frame));
                    run.next += 1;
                    run.left -= 1;
                    if run.left == 0 {
                        pending.pop_front();
                    }
                    self.freed += 1;
                    if self.freed >= RELEASE_BATCH {
                        self.release_freed();
                    }
                    return Ok(());
                }
                Some(InLine::One(_)) => {
                    if let Some(InLine::One(mut slot)) = pending.pop_front() {
                        // A timed-out request's late reply is dropped here.
                        slot.answer(Ok(frame));
                    }
                    return Ok(());
                }
                None => frame,
            }
        };
        self.held = Some(unsolicited);
        Ok(())
    }
}
