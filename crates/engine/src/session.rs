//! The multiplexed profile's rules with no socket, no task and no clock in
//! them (the idea of quinn-proto): what an inbound frame means for a given
//! role, and whether a request may run now. Server, client and peer drivers
//! all decide through this module, so a rule is written (and tested on
//! bytes) once.
//!
//! ```text
//!   frame --classify(role)--> Inbound::{Request, Notify, Cancel, Reply, Push, Ping}
//!   Request/Notify --Flow::admit--> Run | Park | Busy | ShuttingDown | Duplicate
//! ```

use std::collections::VecDeque;

use bytes::BytesMut;

use enchufe_framing::mux::{ErrorCode, Header, Kind};

/// Which end of a multiplexed connection we are: it decides which kinds the
/// other end may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent requests; the other end is a server.
    Client,
    /// We answer requests; the other end is a client.
    Server,
    /// Both hellos carried the peer flag: either end sends every kind.
    Peer,
}

/// One inbound frame, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A request to answer, with its id.
    Request {
        /// The request id.
        id: u64,
        /// The request's body.
        body: BytesMut,
    },
    /// A one-way message to handle; nothing goes back. (From a peer, a push
    /// is one too.)
    Notify(BytesMut),
    /// Stop working on the request with this id.
    Cancel(u64),
    /// The outcome of our request `id`: its body, or the error the other end
    /// sent ([`ErrorCode`] and message).
    Reply {
        /// Our request's id.
        id: u64,
        /// Its body, or the other end's error.
        outcome: Result<BytesMut, (ErrorCode, String)>,
    },
    /// An unsolicited message from a server (client role).
    Push(BytesMut),
    /// A peer's keepalive: proof of life, nothing to do.
    Ping,
}

/// How a multiplexed frame broke the protocol ([`classify`]'s error). Each
/// is its own variant so that a role, a counter or a test matches on what
/// happened; [`Violation::as_str`] is the text a log or a
/// `framing::Error::Malformed` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Fewer bytes than the 9-byte header.
    Short,
    /// A kind byte this version does not know.
    UnknownKind,
    /// A server sent a request, a notify or a cancel to a client.
    ServerSentServerKind(Kind),
    /// A client sent a kind only a server may send (a response, an error,
    /// a push, a ping).
    ClientSentServerKind(Kind),
    /// A ping on a link that is not between two peers.
    PingOutsidePeers,
    /// A kind with no rule here (the kind list grew without one).
    NoRule,
}

impl Violation {
    /// A short description of it, for logs and `framing::Error::Malformed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::Short => "frame shorter than the 9-byte header",
            Violation::UnknownKind => "unknown frame kind",
            Violation::ServerSentServerKind(Kind::Request) => "the server sent a request frame",
            Violation::ServerSentServerKind(Kind::Notify) => "the server sent a notify frame",
            Violation::ServerSentServerKind(_) => "the server sent a cancel frame",
            Violation::ClientSentServerKind(_) => "a client sent a server-only kind",
            Violation::PingOutsidePeers => "a ping on a link that is not between peers",
            Violation::NoRule => "a frame of a kind this version has no rule for",
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Violation {}

/// Classifies a multiplexed frame (the payload after the 4-byte length) for
/// `role`.
///
/// # Errors
/// The protocol [`Violation`]: a frame shorter than the header, an unknown
/// kind, or a kind the other end may not send to us.
///
/// ```
/// use bytes::BytesMut;
/// use enchufe_engine::session::{classify, Inbound, Role, Violation};
/// use enchufe::framing::mux::Kind;
/// let cancel = BytesMut::from(&[6, 0, 0, 0, 0, 0, 0, 0, 9][..]);
/// assert_eq!(classify(cancel.clone(), Role::Server), Ok(Inbound::Cancel(9)));
/// assert_eq!(
///     classify(cancel, Role::Client),
///     Err(Violation::ServerSentServerKind(Kind::Cancel))
/// );
/// ```
pub fn classify(frame: BytesMut, role: Role) -> Result<Inbound, Violation> {
    if frame.len() < enchufe_framing::mux::HEADER_LEN {
        return Err(Violation::Short);
    }
    // Long enough: the only error left is the kind byte.
    let (header, body) = Header::split(frame).map_err(|_| Violation::UnknownKind)?;
    let asks = matches!(role, Role::Server | Role::Peer);
    let answers = matches!(role, Role::Client | Role::Peer);
    Ok(match header.kind {
        Kind::Request if asks => Inbound::Request {
            id: header.id,
            body,
        },
        Kind::Notify if asks => Inbound::Notify(body),
        Kind::Cancel if asks => Inbound::Cancel(header.id),
        Kind::Push if role == Role::Peer => Inbound::Notify(body),
        // The spec gives pushes id 0 but names no violation for another id;
        // the id answers nothing either way, so it is ignored.
        Kind::Push if role == Role::Client => Inbound::Push(body),
        Kind::Response if answers => Inbound::Reply {
            id: header.id,
            outcome: Ok(body),
        },
        Kind::Error if answers => Inbound::Reply {
            id: header.id,
            outcome: Err(ErrorCode::parse(&body)),
        },
        Kind::Ping if role == Role::Peer => Inbound::Ping,
        kind @ (Kind::Request | Kind::Notify | Kind::Cancel) => {
            return Err(Violation::ServerSentServerKind(kind))
        }
        Kind::Ping if role == Role::Client => return Err(Violation::PingOutsidePeers),
        // Only a server is left to reach here: it got a server-only kind.
        kind @ (Kind::Response | Kind::Error | Kind::Push | Kind::Ping) => {
            return Err(Violation::ClientSentServerKind(kind))
        }
        // `Kind` is non-exhaustive, and `Header::split` refuses bytes of no
        // known kind: a kind added to the wire without a rule here is
        // refused rather than guessed at.
        _ => return Err(Violation::NoRule),
    })
}

/// What to do with an inbound request or one-way message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Run its handler now.
    Run,
    /// Hold it until a handler finishes ([`Flow::next_parked`]); reading
    /// goes on meanwhile, so cancels are still read.
    Park,
    /// Answer with [`ErrorCode::Busy`] (requests, under [`Busy::Refuse`]).
    Busy,
    /// Answer with [`ErrorCode::ShuttingDown`] (a request after shutdown
    /// began); a one-way message is dropped.
    ShuttingDown,
    /// A request whose id is already running or parked: answer it with
    /// [`ErrorCode::DuplicateId`]; the
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

/// The requests one end has sent and not yet seen answered, by id, with
/// the slot each answer goes to: shared by the client's connections and by
/// peer links (requests both ways), so registering, answering, giving up
/// and the connection's end follow one set of rules.
///
/// - Ids start at 1 (0 belongs to pushes and one-way messages).
/// - Whoever takes a slot out answers it: the reply, the caller giving up
///   ([`Abandon`]), or the end of the connection ([`InFlight::end`]).
/// - After the end, registering fails at once: nobody waits forever.
///
/// ```
/// use enchufe_engine::session::InFlight;
/// let table: InFlight<&str> = InFlight::new();
/// let id = table.register("slot").unwrap();
/// assert_eq!(table.take(id), Some("slot"));
/// assert_eq!(table.take(id), None, "answered once");
/// assert_eq!(table.end(), Vec::<&str>::new());
/// assert!(table.register("late").is_err());
/// ```
#[derive(Debug)]
pub struct InFlight<S> {
    next_id: std::sync::atomic::AtomicU64,
    /// `None` once the connection has ended.
    slots: std::sync::Mutex<Option<std::collections::HashMap<u64, S>>>,
}

impl<S> Default for InFlight<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> InFlight<S> {
    /// An empty table (allocates nothing until the first request).
    pub fn new() -> Self {
        InFlight {
            next_id: std::sync::atomic::AtomicU64::new(1),
            slots: std::sync::Mutex::new(Some(std::collections::HashMap::new())),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Option<std::collections::HashMap<u64, S>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a slot under a fresh id, before its request can be sent.
    ///
    /// # Errors
    /// The slot back, once the connection has ended.
    pub fn register(&self, slot: S) -> Result<u64, S> {
        let mut slots = self.slots();
        let Some(map) = slots.as_mut() else {
            return Err(slot);
        };
        // A u64 never wraps in practice.
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        map.insert(id, slot);
        Ok(id)
    }

    /// Takes the slot of `id` out, if it is still there.
    pub fn take(&self, id: u64) -> Option<S> {
        self.slots().as_mut()?.remove(&id)
    }

    /// Keeps only the slots `keep` says to, and hands the others to it
    /// (`keep` returns false after answering one): how deadlines are swept.
    pub fn retain(&self, mut keep: impl FnMut(u64, &mut S) -> bool) {
        if let Some(map) = self.slots().as_mut() {
            map.retain(|id, slot| keep(*id, slot));
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.slots().as_ref().map_or(0, |map| map.len())
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection ended: every slot still waiting, to be answered with
    /// why; later registrations fail.
    pub fn end(&self) -> Vec<S> {
        self.slots()
            .take()
            .map(|map| map.into_values().collect())
            .unwrap_or_default()
    }
}

/// A request between registering its slot and its answer: dropped while its
/// slot is still registered means the caller gave up (a timeout, a dropped
/// future), so the slot is freed at once and, if the request went out,
/// `cancel` is called with its id to tell the other end.
pub struct Abandon<'a, S> {
    table: &'a InFlight<S>,
    id: u64,
    sent: bool,
    cancel: &'a (dyn Fn(u64) + Sync),
}

impl<S> std::fmt::Debug for Abandon<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Abandon")
            .field("id", &self.id)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<'a, S> Abandon<'a, S> {
    /// Guards request `id` of `table`; `cancel` runs if it is abandoned
    /// after [`Abandon::sent`].
    pub fn new(table: &'a InFlight<S>, id: u64, cancel: &'a (dyn Fn(u64) + Sync)) -> Self {
        Abandon {
            table,
            id,
            sent: false,
            cancel,
        }
    }

    /// The request went out: abandoning it now owes the other end a cancel.
    pub fn sent(&mut self) {
        self.sent = true;
    }
}

impl<S> Drop for Abandon<'_, S> {
    fn drop(&mut self) {
        // If the answer (or the end) already took the slot, nothing is owed.
        if self.table.take(self.id).is_some() && self.sent {
            (self.cancel)(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, id: u64, body: &[u8]) -> BytesMut {
        let mut out = vec![kind];
        out.extend(id.to_be_bytes());
        out.extend(body);
        BytesMut::from(&out[..])
    }

    #[test]
    fn each_role_accepts_only_what_the_other_end_may_send() {
        use Role::*;
        let ok = |kind, role| classify(frame(kind, 3, b"x"), role).is_ok();
        // Request, notify, cancel: to servers and peers.
        for kind in [1, 4, 6] {
            assert!(ok(kind, Server) && ok(kind, Peer) && !ok(kind, Client));
        }
        // Response, error: to clients and peers.
        for kind in [2, 3] {
            assert!(ok(kind, Client) && ok(kind, Peer) && !ok(kind, Server));
        }
        assert!(ok(5, Client) && ok(5, Peer) && !ok(5, Server));
        assert!(ok(7, Peer) && !ok(7, Client) && !ok(7, Server));
        assert_eq!(
            classify(frame(9, 0, b""), Server),
            Err(Violation::UnknownKind)
        );
        assert_eq!(
            classify(BytesMut::from(&[1u8, 0][..]), Server),
            Err(Violation::Short)
        );
        assert_eq!(
            classify(frame(1, 3, b"x"), Client),
            Err(Violation::ServerSentServerKind(Kind::Request))
        );
        assert_eq!(
            classify(frame(7, 0, b""), Client),
            Err(Violation::PingOutsidePeers)
        );
        assert_eq!(
            classify(frame(2, 3, b"x"), Server),
            Err(Violation::ClientSentServerKind(Kind::Response))
        );
        // The texts a log shows are those of before.
        assert_eq!(
            Violation::Short.to_string(),
            "frame shorter than the 9-byte header"
        );
    }

    #[test]
    fn replies_carry_bodies_or_the_remote_error() {
        assert_eq!(
            classify(frame(2, 7, b"hi"), Role::Client),
            Ok(Inbound::Reply {
                id: 7,
                outcome: Ok(BytesMut::from(&b"hi"[..]))
            })
        );
        assert_eq!(
            classify(frame(3, 7, b"\x03full"), Role::Peer),
            Ok(Inbound::Reply {
                id: 7,
                outcome: Err((ErrorCode::Busy, "full".to_owned()))
            })
        );
        assert_eq!(
            classify(frame(5, 0, b"p"), Role::Peer),
            Ok(Inbound::Notify(BytesMut::from(&b"p"[..])))
        );
    }

    #[test]
    fn one_way_messages_count_against_the_limit_and_wait() {
        let mut flow = Flow::new(2, Busy::Refuse);
        assert_eq!(flow.admit(None, 'a').0, Admit::Run);
        assert_eq!(flow.admit(None, 'b').0, Admit::Run);
        // A third one-way message cannot be refused visibly: it waits.
        assert_eq!(flow.admit(None, 'c').0, Admit::Park);
        // A request is refused under Refuse.
        assert_eq!(flow.admit(Some(1), 'r').0, Admit::Busy);
        assert!(flow.next_parked().is_none());
        flow.finished(None);
        assert_eq!(flow.next_parked(), Some((None, 'c')));
        assert_eq!(flow.running(), 2);
    }

    #[test]
    fn at_the_limit_requests_park_reading_stops_when_full_and_cancels_reach_them() {
        let mut flow = Flow::new(2, Busy::Wait);
        assert_eq!(flow.admit(Some(1), ()).0, Admit::Run);
        assert_eq!(flow.admit(Some(2), ()).0, Admit::Run);
        assert_eq!(flow.admit(Some(3), ()).0, Admit::Park);
        assert!(flow.can_read());
        assert_eq!(flow.admit(Some(4), ()).0, Admit::Park);
        assert!(!flow.can_read());
        assert_eq!(flow.cancel_parked(3), Some(()));
        assert_eq!(flow.cancel_parked(1), None, "running, not parked");
        assert!(flow.can_read());
        // Order is kept: a newcomer never overtakes a parked message.
        flow.finished(Some(1));
        assert_eq!(flow.admit(Some(5), ()).0, Admit::Park);
        assert_eq!(flow.next_parked(), Some((Some(4), ())));
    }

    #[test]
    fn duplicates_are_refused_and_shutdown_answers_what_waits() {
        let mut flow = Flow::new(1, Busy::Wait);
        assert_eq!(flow.admit(Some(1), 'a').0, Admit::Run);
        assert_eq!(flow.admit(Some(1), 'b').0, Admit::Duplicate);
        assert_eq!(flow.admit(Some(2), 'c').0, Admit::Park);
        assert_eq!(flow.admit(Some(2), 'd').0, Admit::Duplicate);
        assert_eq!(flow.stop(), vec![(Some(2), 'c')]);
        assert_eq!(flow.admit(Some(3), 'e').0, Admit::ShuttingDown);
        assert!(flow.next_parked().is_none());
        flow.finished(Some(1));
        assert!(flow.is_idle());
    }

    #[test]
    fn an_abandoned_request_frees_its_slot_and_cancels_only_if_sent() {
        let cancelled = std::sync::Mutex::new(Vec::new());
        let cancel = |id| cancelled.lock().unwrap().push(id);
        let table: InFlight<()> = InFlight::new();
        let quiet = table.register(()).unwrap();
        drop(Abandon::new(&table, quiet, &cancel));
        let loud = table.register(()).unwrap();
        let mut guard = Abandon::new(&table, loud, &cancel);
        guard.sent();
        drop(guard);
        let answered = table.register(()).unwrap();
        let mut guard = Abandon::new(&table, answered, &cancel);
        guard.sent();
        assert_eq!(table.take(answered), Some(()));
        drop(guard);
        assert_eq!(*cancelled.lock().unwrap(), vec![loud]);
        assert!(table.is_empty());
        assert_eq!((quiet, loud, answered), (1, 2, 3));
    }
}
