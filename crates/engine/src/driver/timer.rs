//! The driver's one timer: every deadline a connection keeps (idleness in
//! ticks, keepalive pings, a stalled write, the hello, a frame's
//! completion, the role's own) shares one `Sleep`, reset only when it
//! fires or an earlier deadline comes, with one clock read per firing.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::role::Failure;

/// Idleness is checked this many times per idle timeout: a connection is
/// closed between `idle` and `idle × (1 + 1/IDLE_TICKS)` after its last
/// frame, for four timer firings per idle period instead of a timer reset per
/// frame.
const IDLE_TICKS: u32 = 4;

/// The deadlines a driver keeps. Each is off when `None`.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    /// End the connection after this long without a frame (while the role
    /// is not [busy](super::Driver::set_busy)).
    pub idle: Option<Duration>,
    /// Send a multiplexed `ping` this often, once
    /// [started](super::Driver::start_keepalive).
    pub keepalive: Option<Duration>,
    /// Give up on the output after this long without write progress.
    pub write_timeout: Option<Duration>,
    /// The hello must arrive within this long (until
    /// [`Driver::hello_done`](super::Driver::hello_done)).
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

/// What the timer needs to know of the connection when it fires.
pub(super) struct Seen {
    /// Bytes written so far (a stalled write made no progress).
    pub(super) written: u64,
    /// Part of a frame waits for the rest.
    pub(super) partial: bool,
    /// Frames read so far.
    pub(super) activity: u64,
    /// The role is working: not idleness.
    pub(super) busy: bool,
}

/// What a firing asks of the driver.
pub(super) struct Fired {
    /// A deadline passed.
    pub(super) due: Option<Due>,
    /// A keepalive ping is due.
    pub(super) ping: bool,
}

/// Every deadline of one connection on one `Sleep`.
pub(super) struct Timer {
    sleep: Pin<Box<Sleep>>,
    /// Whether `sleep` holds a deadline we care about.
    armed: bool,
    idle: Option<Duration>,
    next_idle_tick: Option<Instant>,
    quiet_ticks: u32,
    /// Frames read at the last idle tick.
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
}

impl Timer {
    /// A timer for `deadlines`, counted from now.
    pub(super) fn new(deadlines: &Deadlines) -> Timer {
        let now = Instant::now();
        let mut timer = Timer {
            sleep: Box::pin(tokio::time::sleep_until(now)),
            armed: false,
            idle: deadlines.idle,
            next_idle_tick: deadlines.idle.map(|idle| now + idle / IDLE_TICKS),
            quiet_ticks: 0,
            seen_activity: 0,
            keepalive: deadlines.keepalive,
            next_ping: None,
            write_timeout: deadlines.write_timeout,
            stall: None,
            hello: deadlines.hello.map(|limit| (now + limit, limit)),
            frame_limit: deadlines.frame,
            partial_since: None,
            deadline: None,
        };
        timer.rearm();
        timer
    }

    /// The longest a write may make no progress.
    pub(super) fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// Sets the role's own deadline, or clears it. The `Sleep` is reset
    /// only if this one is earlier than what it waits for.
    pub(super) fn set_deadline(&mut self, at: Option<Instant>) {
        self.deadline = at;
        if let Some(at) = at {
            self.arm_by(at);
        }
    }

    /// The role's deadline, if set.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Starts keepalive pings, if the connection has them.
    pub(super) fn start_keepalive(&mut self) {
        if let Some(every) = self.keepalive {
            self.next_ping = Some(Instant::now() + every);
            self.rearm();
        }
    }

    /// The hello arrived: its deadline no longer applies.
    pub(super) fn hello_done(&mut self) {
        self.hello = None;
    }

    /// Whether a frame must complete within a limit (then the driver tells
    /// [`Timer::watch_partial`] before each wait).
    pub(super) fn watches_frames(&self) -> bool {
        self.frame_limit.is_some()
    }

    /// About to wait: a frame left half-arrived (`partial`) starts its
    /// deadline (one clock read per wait, not per frame); a whole one, or
    /// not reading, clears it. `activity` is the frames read so far.
    pub(super) fn watch_partial(&mut self, partial: bool, activity: u64) {
        let fresh = |since: Option<(Instant, u64)>| since.map(|(_, seen)| seen);
        match (partial, fresh(self.partial_since), self.frame_limit) {
            (true, seen, Some(limit)) if seen != Some(activity) => {
                let now = Instant::now();
                self.partial_since = Some((now, activity));
                self.arm_by(now + limit);
            }
            (false, Some(_), _) => self.partial_since = None,
            _ => {}
        }
    }

    /// A write blocked with `written` bytes written so far: stamp the
    /// stall once (or again after progress), and make sure the `Sleep`
    /// fires by its deadline.
    pub(super) fn note_stall(&mut self, written: u64) {
        let Some(limit) = self.write_timeout else {
            return;
        };
        if matches!(self.stall, Some((_, at)) if at == written) {
            return;
        }
        let now = Instant::now();
        self.stall = Some((now, written));
        self.arm_by(now + limit);
    }

    /// The output drained: no write is stalled.
    pub(super) fn flushed(&mut self) {
        self.stall = None;
    }

    /// Whether the `Sleep` fired (registering `cx` if it has not).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        self.armed && self.sleep.as_mut().poll(cx).is_ready()
    }

    /// The `Sleep` fired: check every deadline with one clock read, then
    /// re-arm for the earliest one left.
    pub(super) fn fire(&mut self, seen: &Seen) -> Fired {
        let now = Instant::now();
        let fired = self.due(now, seen);
        self.rearm();
        fired
    }

    fn due(&mut self, now: Instant, seen: &Seen) -> Fired {
        let failed = |failure| Fired {
            due: Some(Due::Failed(failure)),
            ping: false,
        };
        if let (Some((since, written)), Some(limit)) = (self.stall, self.write_timeout) {
            if seen.written != written {
                self.stall = Some((now, seen.written));
            } else if now >= since + limit {
                self.stall = None;
                return failed(Failure::Stalled(limit));
            }
        }
        if let Some((deadline, limit)) = self.hello {
            if now >= deadline {
                self.hello = None;
                return failed(Failure::HelloTimeout(limit));
            }
        }
        if let (Some((since, read)), Some(limit)) = (self.partial_since, self.frame_limit) {
            if now >= since + limit {
                // Cleared either way: the next wait stamps a frame still
                // (or newly) half-arrived.
                self.partial_since = None;
                if read == seen.activity && seen.partial {
                    return failed(Failure::FrameTimeout(limit));
                }
            }
        }
        if let (Some(tick), Some(idle)) = (self.next_idle_tick, self.idle) {
            if now >= tick {
                self.next_idle_tick = Some(now + idle / IDLE_TICKS);
                if seen.activity != self.seen_activity || seen.busy {
                    self.seen_activity = seen.activity;
                    self.quiet_ticks = 0;
                } else {
                    self.quiet_ticks += 1;
                    if self.quiet_ticks >= IDLE_TICKS {
                        self.quiet_ticks = 0;
                        return failed(Failure::IdleTimeout);
                    }
                }
            }
        }
        let mut ping = false;
        if let (Some(at), Some(every)) = (self.next_ping, self.keepalive) {
            if now >= at {
                ping = true;
                self.next_ping = Some(now + every);
            }
        }
        let due = if matches!(self.deadline, Some(at) if now >= at) {
            self.deadline = None;
            Some(Due::Deadline)
        } else {
            None
        };
        Fired { due, ping }
    }

    /// Makes sure the `Sleep` fires by `at`.
    fn arm_by(&mut self, at: Instant) {
        if !self.armed || self.sleep.deadline() > at {
            self.sleep.as_mut().reset(at);
            self.armed = true;
        }
    }

    /// Sets the `Sleep` to the earliest deadline, if any.
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
                self.sleep.as_mut().reset(at);
                self.armed = true;
            }
            None => self.armed = false,
        }
    }
}
