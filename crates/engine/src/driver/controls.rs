//! What the role's loop reads and sets on its driver between events: its
//! state, the wire, the budget, the busy and waiting flags, the deadlines.

use tokio::time::Instant;

use enchufe_framing::Wire;

use super::Driver;

impl<Io, S, C, R> Driver<Io, S, C, R> {
    /// The role.
    pub fn role(&self) -> &R {
        &self.role
    }

    /// The role, to change its state.
    pub fn role_mut(&mut self) -> &mut R {
        &mut self.role
    }

    /// Whether the other end's EOF was reported ([`Event::Eof`]).
    pub fn is_eof(&self) -> bool {
        self.eof
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
    /// holds enough: [`Role::on_queued`] is called again once it drained
    /// below half the budget.
    pub fn set_waiting(&mut self, waiting: bool) {
        self.waiting = waiting;
    }

    /// Starts keepalive pings (a peer link, once the hellos say so).
    pub fn start_keepalive(&mut self) {
        self.timer.start_keepalive();
    }

    /// The hello arrived: its deadline no longer applies.
    pub fn hello_done(&mut self) {
        self.timer.hello_done();
    }

    /// Sets the role's own deadline ([`Role::on_deadline`] when it passes),
    /// or clears it. The timer is reset only if this one is earlier than
    /// what it waits for.
    pub fn set_deadline(&mut self, at: Option<Instant>) {
        self.timer.set_deadline(at);
    }

    /// The role's deadline, if set.
    pub fn deadline(&self) -> Option<Instant> {
        self.timer.deadline()
    }

    /// Reports this connection's traffic through `meter` from now on
    /// (feature `metrics`): frames and bytes each way, added to its
    /// counters whenever the driver waits, its timer fires, and once more
    /// when it is dropped.
    #[cfg(feature = "metrics")]
    pub fn set_meter(&mut self, meter: crate::meter::Meter) {
        self.meter = Some(meter);
    }
}
