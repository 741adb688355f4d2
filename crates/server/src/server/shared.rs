//! What the accept loops, the connection tasks and every handle share.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::door::Doors;
use crate::layer::{DialLayer, Layer};
use crate::outbox::Budget;
use crate::stats::Counters;
use crate::task::Ctx;
use crate::{Connection, ConnectionId, Handler, Result};

use super::listener::Stream;

/// State shared by the accept loop, the connection tasks and every handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// This very `Shared`, for connections to reach their server
    /// ([`Connection::server`]) without keeping it alive.
    pub(super) me: Weak<Shared>,
    pub(super) local_addr: SocketAddr,
    /// Live connections, for push-by-id, broadcast and counting. Plain data
    /// behind a std mutex: never held across an await.
    pub(super) registry: Mutex<HashMap<ConnectionId, Connection>>,
    pub(super) shutdown: CancellationToken,
    pub(super) abort: CancellationToken,
    pub(super) tracker: TaskTracker,
    pub(super) grace: Duration,
    pub(super) handshake_timeout: Duration,
    pub(super) counters: Arc<Counters>,
    /// Bytes queued for every connection together.
    pub(super) budget: Arc<Budget>,
    /// Bytes of large frames arriving on every connection together (the
    /// connections' wires share it through `Ctx`).
    pub(super) memory: enchufe_framing::MemoryBudget,
    /// Connection permits, for accepted and dialed connections alike.
    pub(super) permits: Arc<Semaphore>,
    /// Accepted connections per client address, when limited.
    pub(super) per_address: Option<crate::limits::PerAddress>,
    pub(super) next_id: AtomicU64,
    pub(super) spawner: Spawner,
    /// The WebSocket listener's address ([`Server::ws`]).
    pub(super) ws_addr: Option<SocketAddr>,
    /// How dialed connections are wrapped ([`Server::dial_tls`]).
    pub(super) dial_layer: DialLayer,
}

/// Starts serving one connection, accepted or dialed. The handler's type
/// is erased here so that [`ServerHandle`] need not carry it.
pub(super) struct Spawner(pub(super) Box<SpawnFn>);

pub(super) type SpawnFn = dyn Fn(&Arc<Shared>, NewConnection) + Send + Sync;

/// A connection about to be served.
pub(super) struct NewConnection {
    pub(super) stream: Stream,
    /// What runs on it first (TLS or WebSocket handshake), in its task.
    pub(super) layer: Layer,
    pub(super) peer_addr: SocketAddr,
    pub(super) permit: OwnedSemaphorePermit,
    /// Its place among its address's connections, when they are limited.
    pub(super) address_slot: Option<crate::limits::AddressSlot>,
    /// The listener's doors besides frames, when it has any.
    pub(super) doors: Option<Arc<Doors>>,
    /// Dialed by [`ServerHandle::connect`], which waits on `ready` for the
    /// hello exchange; `None` for an accepted connection.
    pub(super) ready: Option<oneshot::Sender<Result<Connection>>>,
}
impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

impl Shared {
    /// What a connection's layer needs for its handshake.
    pub(super) fn layer_cx<H: Handler>(&self, ctx: &Ctx<H>) -> crate::layer::Context<'_> {
        crate::layer::Context {
            counters: &self.counters,
            deadline: self.handshake_timeout,
            max_frame_length: ctx.config.max_frame_length,
            frame_timeout: ctx.config.frame_timeout,
            detect: ctx.config.detect_timeout.unwrap_or(self.handshake_timeout),
            shutdown: &self.shutdown,
        }
    }

    /// What the front door needs to route a connection to its protocol.
    pub(super) fn routing<'a, H: Handler>(
        &'a self,
        ctx: &Ctx<H>,
        doors: &'a Doors,
        peer: SocketAddr,
    ) -> crate::door::Routing<'a> {
        crate::door::Routing {
            doors,
            detect: ctx.config.detect_timeout.unwrap_or(Duration::ZERO),
            deadline: self.handshake_timeout,
            max_frame_length: ctx.config.max_frame_length,
            peer,
            shutdown: &self.shutdown,
            abort: &self.abort,
            counters: &self.counters,
        }
    }

    pub(super) fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Connection>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells every live connection's driver (shutdown, abort). A connection
    /// registered after this checks the tokens itself (`serve_connection`),
    /// so none is missed: both sides go through the registry's lock.
    pub(super) fn raise_all(&self, flag: u8) {
        for conn in self.registry().values() {
            conn.signal().raise(flag);
        }
    }
}
