use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use enchufe_framing::mux::{Header, Kind, Profile};
use enchufe_framing::{Encode, OutFrame};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

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
    outbound: mpsc::Sender<OutFrame>,
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
}

impl Connection {
    pub(crate) fn new(parts: Parts) -> (Self, mpsc::Receiver<OutFrame>) {
        let (tx, rx) = mpsc::channel(parts.queue);
        let inner = Inner {
            id: parts.id,
            peer_addr: parts.peer_addr,
            local_addr: parts.local_addr,
            outbound: tx,
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
            rx,
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

    /// Sends a message to this client, unprompted. Waits for room in the
    /// outbound queue for at most the server's write timeout.
    ///
    /// In the plain profile a push and a reply look the same on the wire.
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is closing, [`Error::WriteStalled`]
    /// if the client does not read for the write timeout, [`Error::Framing`]
    /// if the message does not encode or is over the frame limit.
    pub async fn push<M: Encode>(&self, msg: M) -> Result<()> {
        let frame = self.frame(msg)?;
        self.enqueue(frame).await
    }

    /// Sends a message to this client if its outbound queue has room now.
    ///
    /// # Errors
    /// [`Error::QueueFull`] when it has not, and as [`Connection::push`].
    pub fn try_push<M: Encode>(&self, msg: M) -> Result<()> {
        let frame = self.frame(msg)?;
        self.try_enqueue(frame)
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

    pub(crate) async fn enqueue(&self, frame: OutFrame) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let limit = self.inner.write_timeout;
        tokio::select! {
            sent = tokio::time::timeout(limit, self.inner.outbound.send(frame)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Error::Closed),
                Err(_) => Err(Error::WriteStalled(limit)),
            },
            () = self.inner.closing.cancelled() => Err(Error::Closed),
        }
    }

    pub(crate) fn try_enqueue(&self, frame: OutFrame) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.inner.outbound.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::QueueFull,
            mpsc::error::TrySendError::Closed(_) => Error::Closed,
        })
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
