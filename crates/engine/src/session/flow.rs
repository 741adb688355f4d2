//! Whether an inbound request may run now: the in-flight limit, parking,
//! the busy policy, duplicates and shutdown.

use std::collections::VecDeque;

/// What to do with an inbound request or one-way message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Run its handler now.
    Run,
    /// Hold it until a handler finishes ([`Flow::next_parked`]); reading
    /// goes on meanwhile, so cancels are still read.
    Park,
    /// Answer with [`ErrorCode::Busy`](enchufe_framing::mux::ErrorCode::Busy) (requests, under [`Busy::Refuse`]).
    Busy,
    /// Answer with [`ErrorCode::ShuttingDown`](enchufe_framing::mux::ErrorCode::ShuttingDown) (a request after shutdown
    /// began); a one-way message is dropped.
    ShuttingDown,
    /// A request whose id is already running or parked: answer it with
    /// [`ErrorCode::DuplicateId`](enchufe_framing::mux::ErrorCode::DuplicateId); the
    /// first goes on untouched.
    Duplicate,
}

/// What a request beyond the in-flight limit gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// It waits (parked, then unread) until a handler finishes.
    Wait,
    /// It is answered with a `busy` error at once. One-way messages, which
    /// cannot be answered, wait instead.
    Refuse,
}

/// Flow control of the requests and one-way messages a connection runs:
/// every message that runs a handler counts against the limit, requests
/// and one-way messages alike; past it, messages are parked (bounded), so a
/// cancel behind them is still read; at shutdown, new requests are answered
/// `shutting down`. Generic over what a parked message carries.
#[derive(Debug)]
pub struct Flow<T> {
    max_in_flight: usize,
    busy: Busy,
    /// Requests running now, by id (one-way messages have none).
    running_ids: Vec<u64>,
    /// One-way messages running now.
    running_notifies: usize,
    /// Admitted but not yet running, oldest first; at most `max_in_flight`.
    parked: VecDeque<(Option<u64>, T)>,
    stopping: bool,
}

impl<T> Flow<T> {
    /// Flow control with this limit (at least 1) and policy.
    pub fn new(max_in_flight: usize, busy: Busy) -> Flow<T> {
        Flow {
            max_in_flight: max_in_flight.max(1),
            busy,
            running_ids: Vec::new(),
            running_notifies: 0,
            parked: VecDeque::new(),
            stopping: false,
        }
    }

    /// Messages running now.
    pub fn running(&self) -> usize {
        self.running_ids.len() + self.running_notifies
    }

    /// Messages parked now.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Whether another frame may be read: false once the parked queue is
    /// full, so a client cannot make us hold more than twice the limit.
    pub fn can_read(&self) -> bool {
        self.parked.len() < self.max_in_flight
    }

    /// Whether nothing runs or waits.
    pub fn is_idle(&self) -> bool {
        self.running() == 0 && self.parked.is_empty()
    }

    fn knows(&self, id: u64) -> bool {
        self.running_ids.contains(&id) || self.parked.iter().any(|(p, _)| *p == Some(id))
    }

    /// Decides what to do with request `id` (`None`: a one-way message)
    /// carrying `item`; on [`Admit::Run`] it counts as running, on
    /// [`Admit::Park`] it is kept here. The item comes back otherwise.
    pub fn admit(&mut self, id: Option<u64>, item: T) -> (Admit, Option<T>) {
        if let Some(id) = id {
            if self.knows(id) {
                return (Admit::Duplicate, Some(item));
            }
        }
        if self.stopping {
            return (Admit::ShuttingDown, Some(item));
        }
        if self.running() < self.max_in_flight && self.parked.is_empty() {
            self.start(id);
            return (Admit::Run, Some(item));
        }
        if id.is_some() && self.busy == Busy::Refuse {
            return (Admit::Busy, Some(item));
        }
        self.parked.push_back((id, item));
        (Admit::Park, None)
    }

    fn start(&mut self, id: Option<u64>) {
        match id {
            Some(id) => self.running_ids.push(id),
            None => self.running_notifies += 1,
        }
    }

    /// A handler finished (or was cancelled).
    pub fn finished(&mut self, id: Option<u64>) {
        match id {
            Some(id) => {
                if let Some(at) = self.running_ids.iter().position(|r| *r == id) {
                    self.running_ids.swap_remove(at);
                }
            }
            None => self.running_notifies = self.running_notifies.saturating_sub(1),
        }
    }

    /// The next parked message that may run now, counted as running.
    pub fn next_parked(&mut self) -> Option<(Option<u64>, T)> {
        if self.stopping || self.running() >= self.max_in_flight {
            return None;
        }
        let (id, item) = self.parked.pop_front()?;
        self.start(id);
        Some((id, item))
    }

    /// A cancel for `id`: a parked request is dropped here (returned, so the
    /// caller knows nothing is owed); `None` if it is not parked (it may be
    /// running: the caller aborts it).
    pub fn cancel_parked(&mut self, id: u64) -> Option<T> {
        let at = self.parked.iter().position(|(p, _)| *p == Some(id))?;
        self.parked.remove(at).map(|(_, item)| item)
    }

    /// Shutdown began: nothing new runs. Returns the parked messages, to be
    /// answered `shutting down` (requests) or dropped (one-way).
    pub fn stop(&mut self) -> Vec<(Option<u64>, T)> {
        self.stopping = true;
        self.parked.drain(..).collect()
    }
}
