use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::mux::{Header, Hello, Kind, Profile};
use enchufe_framing::{Decode, Encode, OutFrame};
use tracing::trace;

use crate::outbox::{flag, Budget, Outbox, Refused, Signal};
use crate::requests::{Carrier, Requests};
use crate::stats::Counters;
use crate::{Error, Result, SlowConsumer, Unsupported};

/// A connection's number, unique for the life of a server (starting at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a connection ended, as given to
/// [`Handler::on_disconnect`](crate::Handler::on_disconnect) and logged: the
/// framing crate's [`Ended`](enchufe_engine::Ended), the one "why it ended"
/// type of every role, with the server's [`Error`] as its failure.
///
/// `Disconnect::Closed` is [`Connection::close`]; `Disconnect::Shutdown` the
/// server's graceful shutdown; `Disconnect::Error` bad input, a handler's
/// error or panic, or a stalled client. A TCP connection that ends with
/// `Disconnect::Error` is reset rather than closed (what was queued is
/// flushed first), so its client can tell the failure from a goodbye,
/// unless the two ends disagree on the protocol
/// ([`Error::ends_with_reset`]).
pub type Disconnect = enchufe_engine::Ended<Error>;

/// One client's connection, as the server sees it.
///
/// Cheap to clone; every clone talks to the same connection. Keep a clone to
/// push to the client later, from any task (the course's `send(value, socket)`).
/// Once the connection is gone, pushes fail with [`Error::Closed`].
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    id: ConnectionId,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    /// Pushes (and a peer's requests) for the driver; bounded in bytes so
    /// that a client that never reads cannot grow the server's memory.
    outbox: Outbox,
    /// Wakes the driver: frames queued, close, shutdown. Its CLOSE flag is
    /// the connection's "closing" state.
    signal: Signal,
    /// What a push does when the outbox is full.
    policy: SlowConsumer,
    /// The server's counters (dropped pushes, slow disconnects).
    counters: Arc<Counters>,
    /// Frames over this are refused before they are queued.
    max_frame_length: usize,
    /// How long a push may wait for room in the queue.
    write_timeout: Duration,
    /// Plain pushes are bare frames; multiplexed ones carry a push header.
    /// [`PROFILE_UNKNOWN`] until the first frame decides ([`Profile::Auto`]):
    /// set once, read by every push (a relaxed load).
    profile: AtomicU8,
    /// The writer's failure, kept so the disconnect reason can name it.
    failure: Mutex<Option<Box<Error>>>,
    /// Per-connection state of any types the handler wants (see `with_state`).
    state: Mutex<Option<Box<StateMap>>>,
    /// The other end's hello (multiplexed profile), once read.
    remote: OnceLock<Box<Remote>>,
    /// Whether we speak as a peer ([`Config::peer`](crate::Config::peer)).
    local_peer: bool,
    /// The server this connection belongs to (weak: the server's registry
    /// holds its connections). Its type is erased so that this module does
    /// not depend on the server's: the server knows its connections, not the
    /// reverse; [`Connection::server`] gives it back as a handle.
    server: Weak<dyn Any + Send + Sync>,
    /// Set by [`Connection::drain`]: keep reading after closing.
    draining: AtomicBool,
    /// Whether this end dialed the connection ([`ServerHandle::connect`](crate::ServerHandle::connect)).
    outbound: bool,
}

/// The other end of a multiplexed connection, once its hello arrived: who
/// it is, and our requests to it. Boxed in `Inner`: a plain connection
/// never has one.
struct Remote {
    hello: Hello,
    requests: Requests,
}

/// The handler's per-connection state, by type ([`Connection::with_state`]);
/// boxed in `Inner`, and only once used: most connections never do.
type StateMap = HashMap<TypeId, Box<dyn Any + Send>>;

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("peer_addr", &self.inner.peer_addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Parts {
    pub(crate) id: ConnectionId,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    pub(crate) max_frame_length: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) queue: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) budget: Arc<Budget>,
    pub(crate) profile: Profile,
    pub(crate) policy: SlowConsumer,
    pub(crate) counters: Arc<Counters>,
    pub(crate) local_peer: bool,
    pub(crate) outbound: bool,
    pub(crate) server: Weak<dyn Any + Send + Sync>,
}

impl Connection {
    pub(crate) fn new(parts: Parts) -> Self {
        let outbox = Outbox::new(parts.queue, parts.queue_bytes, parts.budget);
        let inner = Inner {
            id: parts.id,
            peer_addr: parts.peer_addr,
            local_addr: parts.local_addr,
            outbox,
            signal: Signal::default(),
            policy: parts.policy,
            counters: parts.counters,
            max_frame_length: parts.max_frame_length,
            write_timeout: parts.write_timeout,
            profile: AtomicU8::new(profile_code(parts.profile)),
            failure: Mutex::new(None),
            state: Mutex::new(None),
            remote: OnceLock::new(),
            local_peer: parts.local_peer,
            outbound: parts.outbound,
            server: parts.server,
            draining: AtomicBool::new(false),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    /// The server address this client connected to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The node id the other end sent in its hello: a peer's name, usually
    /// empty for clients. `None` in the plain profile (no hello) and before
    /// the hello has arrived (never inside a handler).
    pub fn node_id(&self) -> Option<&str> {
        self.inner
            .remote
            .get()
            .map(|remote| remote.hello.node_id.as_str())
    }

    /// Whether both ends are peers ([`Config::peer`](crate::Config::peer) on
    /// both sides): then either may send requests
    /// ([`Connection::request`]) on this connection.
    pub fn is_peer(&self) -> bool {
        self.inner.local_peer
            && self
                .inner
                .remote
                .get()
                .is_some_and(|remote| remote.hello.peer)
    }

    /// The server this connection belongs to, type-erased (see
    /// [`Connection::server`]).
    pub(crate) fn home(&self) -> &Weak<dyn Any + Send + Sync> {
        &self.inner.server
    }

    /// Whether this end dialed the connection
    /// ([`ServerHandle::connect`](crate::ServerHandle::connect)) rather than
    /// accepted it.
    pub fn is_outbound(&self) -> bool {
        self.inner.outbound
    }

    /// Sends a request to the other end of a peer connection and waits for
    /// its reply, within [`PeerLinks::request_timeout`](crate::PeerLinks::request_timeout).
    /// The other end's handler answers it, as this end's handler answers the
    /// other's requests.
    ///
    /// # Errors
    /// [`Error::Unsupported`] unless [`Connection::is_peer`];
    /// [`Error::Timeout`]; [`Error::Remote`] when the other end answers with
    /// an error frame; [`Error::Closed`] when the connection ends first;
    /// [`Error::Framing`] when the message does not encode, is over the frame
    /// limit, or the reply does not decode as `R`.
    ///
    /// # Cancel safety
    /// Dropping the future gives up the request: its slot is freed and the
    /// other end is sent a `cancel`.
    pub async fn request<M: Encode, R: Decode>(&self, msg: M) -> Result<R> {
        let timeout = self
            .inner
            .remote
            .get()
            .map_or(Duration::ZERO, |r| r.requests.timeout());
        self.request_timeout(msg, timeout).await
    }

    /// [`Connection::request`] with its own timeout.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub async fn request_timeout<M: Encode, R: Decode>(
        &self,
        msg: M,
        timeout: Duration,
    ) -> Result<R> {
        if !self.is_peer() {
            return Err(Error::Unsupported(Unsupported::RequestsNeedPeers));
        }
        let body = msg.encode()?;
        let exchange = async {
            match self.inner.remote.get() {
                Some(remote) => remote.requests.exchange(self, body).await,
                None => Err(Error::Closed),
            }
        };
        let frame = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        R::decode(frame).map_err(Error::Framing)
    }

    /// Sends a message to this client, unprompted (the course's
    /// `send(value, socket)`).
    ///
    /// When the client's outbound queue is full, the server's
    /// [`SlowConsumer`] policy decides: wait (up to the write timeout), drop
    /// this push, drop the oldest queued push, or drop the connection.
    ///
    /// In the plain profile a push and a reply look the same on the wire; in
    /// the multiplexed profile a push is marked as one.
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is closing;
    /// [`Error::WriteStalled`] if no room came within the write timeout
    /// (`Block`, `Disconnect`); [`Error::QueueFull`] if the push was dropped
    /// (`DropNewest`, or `DropOldest` with only replies queued);
    /// [`Error::Framing`] if the message does not encode or is over the frame
    /// limit.
    pub async fn push<M: Encode>(&self, msg: M) -> Result<()> {
        let frame = self.frame(msg)?;
        self.offer(frame, true).await
    }

    /// Sends a message to this client without waiting: when the queue is
    /// full, the push is dropped (or, under `DropOldest`, the oldest queued
    /// push is).
    ///
    /// # Errors
    /// [`Error::QueueFull`] when it was dropped; otherwise as
    /// [`Connection::push`].
    pub fn try_push<M: Encode>(&self, msg: M) -> Result<()> {
        let frame = self.frame(msg)?;
        self.offer_now(frame)
    }

    /// Asks the server to close this connection: frames already queued are
    /// still sent, then the connection is closed. Returns at once.
    pub fn close(&self) {
        // New pushes are refused (and waiting ones fail) at once; what is
        // queued is still sent by the driver before it closes.
        self.inner.outbox.close();
        self.inner.signal.raise(flag::CLOSE);
    }

    /// Retires the connection without losing what the other end already
    /// sent (multiplexed profile): frames already queued are still sent, then
    /// this end stops sending (a half-close), but it goes on reading and
    /// handling one-way messages until the other end closes too (or the idle
    /// timeout passes). Replies to requests read meanwhile cannot be sent.
    /// Peers use it to drop a duplicate link. Returns at once; in the plain
    /// profile it is [`Connection::close`].
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
        self.close();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.signal.is_raised(flag::CLOSE)
    }

    /// Runs `f` on this connection's state of type `T`, created with
    /// `T::default()` on first use. Any number of types can be kept side by
    /// side. The state lives as long as the connection's clones.
    ///
    /// `f` runs under a lock: keep it short and do not block in it.
    ///
    /// ```
    /// # use enchufe::server::Connection;
    /// #[derive(Default)]
    /// struct Nick(Option<String>);
    ///
    /// fn rename(conn: &Connection, nick: &str) -> Option<String> {
    ///     conn.with_state(|state: &mut Nick| state.0.replace(nick.to_owned()))
    /// }
    /// ```
    pub fn with_state<T, R>(&self, f: impl FnOnce(&mut T) -> R) -> R
    where
        T: Default + Send + 'static,
    {
        let mut map = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = map
            .get_or_insert_with(Default::default)
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match slot.downcast_mut::<T>() {
            Some(state) => f(state),
            // The map is keyed by the value's own TypeId, so the entry always
            // holds a T; should that ever break, start that state afresh
            // rather than panic.
            None => {
                let mut fresh = T::default();
                let out = f(&mut fresh);
                *slot = Box::new(fresh);
                out
            }
        }
    }

    /// The frame that pushes `msg` to this client.
    pub(crate) fn frame<M: Encode>(&self, msg: M) -> Result<OutFrame> {
        self.push_frame(msg.encode()?)
    }

    /// The frame that pushes an encoded body to this client (broadcast
    /// encodes once and calls this per connection).
    pub(crate) fn push_frame(&self, body: Bytes) -> Result<OutFrame> {
        let frame = match self.inner.profile.load(Ordering::Relaxed) {
            PROFILE_MULTIPLEXED => OutFrame::with_header(
                Header {
                    kind: Kind::Push,
                    id: 0,
                },
                body,
            ),
            PROFILE_PLAIN => OutFrame::plain(body),
            // Neither framing would be right yet; the handler has not seen
            // this connection either (a broadcast passes it by).
            _ => return Err(Error::Unsupported(Unsupported::PushBeforeProfile)),
        };
        self.check_len(frame)
    }

    /// Refuses a frame over the limit before it is queued, so the failure is
    /// the sender's alone and the connection goes on.
    pub(crate) fn check_len(&self, frame: OutFrame) -> Result<OutFrame> {
        if frame.len() > self.inner.max_frame_length {
            return Err(enchufe_framing::Error::TooLargeToSend {
                len: frame.len() as u64,
                limit: self.inner.max_frame_length,
            }
            .into());
        }
        Ok(frame)
    }

    /// Queues a push, waiting as the policy allows.
    async fn offer(&self, frame: OutFrame, is_push: bool) -> Result<()> {
        match self.inner.policy {
            SlowConsumer::Block => self.wait_for_room(frame, is_push).await,
            SlowConsumer::Disconnect => match self.wait_for_room(frame, is_push).await {
                Err(Error::WriteStalled(after)) => {
                    self.slow(after);
                    Err(Error::WriteStalled(after))
                }
                other => other,
            },
            _ => {
                if !self.inner.outbox.would_fit(&frame) {
                    // Give the driver one turn first: when the push comes
                    // from a handler on the connection's own task, the
                    // driver only drains the queue while the handler waits.
                    tokio::task::yield_now().await;
                }
                self.offer_now(frame)
            }
        }
    }

    /// Queues a push without waiting, as the policy says for a full queue.
    pub(crate) fn offer_now(&self, frame: OutFrame) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let outbox = &self.inner.outbox;
        let signal = &self.inner.signal;
        let queued = match self.inner.policy {
            SlowConsumer::DropOldest => outbox.send_evicting(frame, signal).map(|evicted| {
                self.inner.counters.dropped(evicted as u64);
            }),
            _ => outbox.try_send(frame, true, signal),
        };
        match queued {
            Ok(()) => Ok(()),
            Err(Refused::Closed) => Err(Error::Closed),
            Err(Refused::Full) => {
                self.inner.counters.dropped(1);
                if self.inner.policy == SlowConsumer::Disconnect {
                    self.slow(self.inner.write_timeout);
                }
                Err(Error::QueueFull)
            }
        }
    }

    async fn wait_for_room(&self, frame: OutFrame, is_push: bool) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let limit = self.inner.write_timeout;
        // A close refuses new frames and wakes this wait (Outbox::close).
        let send = self.inner.outbox.send(frame, is_push, &self.inner.signal);
        match tokio::time::timeout(limit, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => Err(Error::Closed),
            Err(_) => Err(Error::WriteStalled(limit)),
        }
    }

    /// Drops this connection as a slow consumer (counted once).
    pub(crate) fn slow(&self, after: Duration) {
        if !self.is_closed() {
            Counters::add(&self.inner.counters.slow_disconnects, 1);
        }
        self.fail(Error::WriteStalled(after));
    }

    /// The server's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Whether this connection speaks the plain profile (or may: its
    /// profile is not decided yet).
    pub(crate) fn is_plain(&self) -> bool {
        self.inner.profile.load(Ordering::Relaxed) != PROFILE_MULTIPLEXED
    }

    /// The profile this connection speaks; `None` while a server in
    /// [`Profile::Auto`] waits for the first frame.
    pub(crate) fn profile(&self) -> Option<Profile> {
        match self.inner.profile.load(Ordering::Relaxed) {
            PROFILE_PLAIN => Some(Profile::Plain),
            PROFILE_MULTIPLEXED => Some(Profile::Multiplexed),
            _ => None,
        }
    }

    /// The first frame decided the profile ([`Profile::Auto`]).
    pub(crate) fn set_profile(&self, profile: Profile) {
        self.inner
            .profile
            .store(profile_code(profile), Ordering::Relaxed);
    }

    pub(crate) fn signal(&self) -> &Signal {
        &self.inner.signal
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// Records why the connection failed (first failure wins) and closes it.
    pub(crate) fn fail(&self, error: Error) {
        let mut slot = self
            .inner
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert_with(|| Box::new(error));
        drop(slot);
        self.close();
    }

    /// Records the other end's hello.
    /// Records the other end's hello; our requests to it are bounded by
    /// `max_in_flight` and wait `timeout` by default.
    pub(crate) fn set_remote(&self, hello: Hello, max_in_flight: usize, timeout: Duration) {
        let requests = Requests::new(max_in_flight, timeout);
        let _ = self.inner.remote.set(Box::new(Remote { hello, requests }));
    }

    /// Answers our request `id` with what the other end sent; a reply for
    /// an id we no longer wait for (timed out, cancelled) is dropped.
    pub(crate) fn answer(&self, id: u64, outcome: Result<BytesMut>) {
        match self.inner.remote.get() {
            Some(remote) => remote.requests.answer(id, outcome),
            None => trace!(id, "reply with no request sent dropped"),
        }
    }

    /// The connection has ended: every request still waiting fails, and
    /// later ones fail at once.
    pub(crate) fn end_requests(&self) {
        if let Some(remote) = self.inner.remote.get() {
            remote.requests.end();
        }
    }

    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(|failure| *failure)
    }
}

impl Carrier for Connection {
    fn check_len(&self, frame: OutFrame) -> Result<OutFrame> {
        Connection::check_len(self, frame)
    }

    async fn send(&self, frame: OutFrame) -> Result<()> {
        self.wait_for_room(frame, false).await
    }

    /// A cancel is a few bytes and frees the other end's work: it goes past
    /// the budget rather than be skipped (once the connection is closed it
    /// is, and a late reply is dropped on arrival).
    fn cancel(&self, id: u64) {
        let cancel = OutFrame::with_header(
            Header {
                kind: Kind::Cancel,
                id,
            },
            Bytes::new(),
        );
        let _ = self.inner.outbox.force(cancel, &self.inner.signal);
    }
}

const PROFILE_PLAIN: u8 = 0;
const PROFILE_MULTIPLEXED: u8 = 1;
const PROFILE_UNKNOWN: u8 = 2;

fn profile_code(profile: Profile) -> u8 {
    match profile {
        Profile::Plain => PROFILE_PLAIN,
        Profile::Multiplexed => PROFILE_MULTIPLEXED,
        _ => PROFILE_UNKNOWN,
    }
}
