use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use enchufe_framing::mux::{Header, Kind, Profile};
use enchufe_framing::{Encode, OutFrame};
use tokio_util::sync::CancellationToken;

use crate::outbox::{Outbox, Refused};
use crate::stats::Counters;
use crate::{Error, Result, SlowConsumer};

/// A connection's number, unique for the life of a server (starting at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a connection ended, as given to
/// [`Handler::on_disconnect`](crate::Handler::on_disconnect) and logged.
#[derive(Debug)]
#[non_exhaustive]
pub enum Disconnect {
    /// The client closed its side between frames: a clean goodbye.
    PeerClosed,
    /// No complete frame arrived within the idle timeout.
    IdleTimeout,
    /// The server is shutting down.
    Shutdown,
    /// Server code asked for it with [`Connection::close`].
    Closed,
    /// Something failed: bad input, a handler error or panic, a stalled client.
    Error(Error),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::PeerClosed => f.write_str("closed by peer"),
            Disconnect::IdleTimeout => f.write_str("idle timeout"),
            Disconnect::Shutdown => f.write_str("server shutdown"),
            Disconnect::Closed => f.write_str("closed by server"),
            Disconnect::Error(e) => write!(f, "error: {e}"),
        }
    }
}

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
    /// Replies and pushes for the writer task; bounded so that a client that
    /// never reads cannot grow the server's memory.
    outbox: Arc<Outbox>,
    /// What a push does when the outbox is full.
    policy: SlowConsumer,
    /// The server's counters (dropped pushes, slow disconnects).
    counters: Arc<Counters>,
    /// Cancelled when the connection is closing: the reader stops, the writer
    /// sends what is queued and half-closes, pushes fail fast.
    closing: CancellationToken,
    /// Frames over this are refused before they are queued.
    max_frame_length: usize,
    /// How long a push may wait for room in the queue.
    write_timeout: Duration,
    /// Plain pushes are bare frames; multiplexed ones carry a push header.
    profile: Profile,
    /// The writer's failure, kept so the disconnect reason can name it.
    failure: Mutex<Option<Error>>,
    /// Per-connection state of any types the handler wants (see `with_state`).
    state: Mutex<HashMap<TypeId, Box<dyn Any + Send>>>,
}

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
    pub(crate) closing: CancellationToken,
    pub(crate) profile: Profile,
    pub(crate) policy: SlowConsumer,
    pub(crate) counters: Arc<Counters>,
}

impl Connection {
    pub(crate) fn new(parts: Parts) -> (Self, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(parts.queue));
        let inner = Inner {
            id: parts.id,
            peer_addr: parts.peer_addr,
            local_addr: parts.local_addr,
            outbox: outbox.clone(),
            policy: parts.policy,
            counters: parts.counters,
            closing: parts.closing,
            max_frame_length: parts.max_frame_length,
            write_timeout: parts.write_timeout,
            profile: parts.profile,
            failure: Mutex::new(None),
            state: Mutex::new(HashMap::new()),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            outbox,
        )
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
        self.inner.closing.cancel();
    }

    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.is_cancelled()
    }

    /// Runs `f` on this connection's state of type `T`, created with
    /// `T::default()` on first use. Any number of types can be kept side by
    /// side. The state lives as long as the connection's clones.
    ///
    /// `f` runs under a lock: keep it short and do not block in it.
    ///
    /// ```
    /// # use enchufe_server::Connection;
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
        let frame = match self.inner.profile {
            Profile::Multiplexed => OutFrame::with_header(
                Header {
                    kind: Kind::Push,
                    id: 0,
                },
                body,
            ),
            _ => OutFrame::plain(body),
        };
        self.check_len(frame)
    }

    /// Refuses a frame over the limit before it is queued, so the failure is
    /// the sender's alone and the connection goes on.
    pub(crate) fn check_len(&self, frame: OutFrame) -> Result<OutFrame> {
        if frame.len() > self.inner.max_frame_length {
            return Err(enchufe_framing::Error::FrameTooLarge {
                declared: frame.len() as u64,
                limit: self.inner.max_frame_length,
            }
            .into());
        }
        Ok(frame)
    }

    /// Queues a reply (never dropped): waits for room up to the write
    /// timeout; past it the connection is dropped as a slow consumer.
    pub(crate) async fn enqueue(&self, frame: OutFrame) -> Result<()> {
        match self.wait_for_room(frame, false).await {
            Err(Error::WriteStalled(after)) => {
                self.slow(after);
                Err(Error::WriteStalled(after))
            }
            other => other,
        }
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
            _ => self.offer_now(frame),
        }
    }

    /// Queues a push without waiting, as the policy says for a full queue.
    pub(crate) fn offer_now(&self, frame: OutFrame) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let outbox = &self.inner.outbox;
        let queued = match self.inner.policy {
            SlowConsumer::DropOldest => outbox.send_evicting(frame).map(|evicted| {
                Counters::add(&self.inner.counters.pushes_dropped, evicted as u64);
            }),
            _ => outbox.try_send(frame, true),
        };
        match queued {
            Ok(()) => Ok(()),
            Err(Refused::Closed) => Err(Error::Closed),
            Err(Refused::Full) => {
                Counters::add(&self.inner.counters.pushes_dropped, 1);
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
        let send = self.inner.outbox.send(frame, is_push);
        tokio::select! {
            sent = tokio::time::timeout(limit, send) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_closed)) => Err(Error::Closed),
                Err(_) => Err(Error::WriteStalled(limit)),
            },
            () = self.inner.closing.cancelled() => Err(Error::Closed),
        }
    }

    /// Drops this connection as a slow consumer (counted once).
    pub(crate) fn slow(&self, after: Duration) {
        if !self.is_closed() {
            Counters::add(&self.inner.counters.slow_disconnects, 1);
        }
        self.fail(Error::WriteStalled(after));
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// Records why the connection failed (first failure wins) and closes it.
    pub(crate) fn fail(&self, error: Error) {
        let mut slot = self
            .inner
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(error);
        drop(slot);
        self.close();
    }

    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
