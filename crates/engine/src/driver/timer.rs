//! The driver's one timer: every deadline a connection keeps (idleness in
//! ticks, keepalive pings, a stalled write, the hello, a frame's
//! completion, the role's own) shares one `Sleep`, reset only when it
//! fires or an earlier deadline comes, with one clock read per firing.

use std::ops::Deref;
use std::time::Duration;

use bytes::Bytes;
use enchufe_framing::mux::{Header, Kind};
use enchufe_framing::{OutFrame, Split};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::Driver;
use crate::role::{Failure, Role};
use crate::Signal;

/// Idleness is checked this many times per idle timeout: a connection is
/// closed between `idle` and `idle × (1 + 1/IDLE_TICKS)` after its last
/// frame, for four timer firings per idle period instead of a timer reset per
/// frame.
pub(super) const IDLE_TICKS: u32 = 4;

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

/// What the timer found due.
pub(super) enum Due {
    Failed(Failure),
    Deadline,
}

impl<Io, S, C, R> Driver<Io, S, C, R>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    S: Deref<Target = Signal>,
    C: Split,
    R: Role<Io, C>,
{
    /// Sets the role's own deadline ([`Role::on_deadline`] when it passes),
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

    /// About to wait: a frame left half-arrived starts its deadline (one
    /// clock read per wait, not per frame); a whole one, or not reading,
    /// clears it. A role that is not reading (a handler runs) does not hold
    /// the other end to the deadline.
    pub(super) fn watch_partial(&mut self, read: bool) {
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
    pub(super) fn note_stall(&mut self) {
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
    pub(super) fn on_timer(&mut self) -> Option<Due> {
        #[cfg(feature = "metrics")]
        self.report();
        let now = Instant::now();
        let event = self.due(now);
        self.rearm();
        event
    }

    fn due(&mut self, now: Instant) -> Option<Due> {
        if let (Some((since, written)), Some(limit)) = (self.stall, self.write_timeout) {
            if self.wire.written() != written {
                self.stall = Some((now, self.wire.written()));
            } else if now >= since + limit {
                self.write_done = true;
                self.stall = None;
                return Some(Due::Failed(Failure::Stalled(limit)));
            }
        }
        if let Some((deadline, limit)) = self.hello {
            if now >= deadline {
                self.hello = None;
                return Some(Due::Failed(Failure::HelloTimeout(limit)));
            }
        }
        if let (Some((since, seen)), Some(limit)) = (self.partial_since, self.frame_limit) {
            if now >= since + limit {
                // Cleared either way: the next wait stamps a frame still
                // (or newly) half-arrived.
                self.partial_since = None;
                if seen == self.activity && self.wire.has_partial_frame() {
                    return Some(Due::Failed(Failure::FrameTimeout(limit)));
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
                        return Some(Due::Failed(Failure::IdleTimeout));
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
            return Some(Due::Deadline);
        }
        None
    }

    /// Sets the timer to the earliest deadline, if any.
    pub(super) fn rearm(&mut self) {
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
}
