//! [`ServerHandle`]: a running server's connections, pushes, dials and
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use enchufe_framing::Encode;
use tokio::net::ToSocketAddrs;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tracing::{info, warn};

use crate::layer::Layer;
use crate::outbox::flag;
use crate::stats::{ShutdownReport, Stats};
use crate::{Connection, ConnectionId, Error, Result};

use super::listener::{Stream, UNIX_ADDR, UNKNOWN_ADDR};
use super::shared::{NewConnection, Shared};

/// A handle to a running server: its address, its live connections, shutdown.
///
/// Cheap to clone. Dropping every handle does not stop the server; call
/// [`ServerHandle::shutdown`].
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// The handle of a server still running.
    pub(super) fn of(shared: Arc<Shared>) -> ServerHandle {
        ServerHandle { shared }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address of the WebSocket listener (`Server::ws`), if any.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.shared.ws_addr
    }

    /// How many connections are being served now.
    pub fn connection_count(&self) -> usize {
        self.shared.registry().len()
    }

    /// Every live connection.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared.registry().values().cloned().collect()
    }

    /// The live connection with this id.
    pub fn connection(&self, id: ConnectionId) -> Option<Connection> {
        self.shared.registry().get(&id).cloned()
    }

    /// Pushes a message to one connection.
    ///
    /// # Errors
    /// [`Error::Closed`] if there is no such live connection; otherwise as
    /// [`Connection::push`].
    pub async fn push<M: Encode>(&self, id: ConnectionId, msg: M) -> Result<()> {
        let conn = self.connection(id).ok_or(Error::Closed)?;
        conn.push(msg).await
    }

    /// Queues a message to every live connection, encoding it once; never
    /// waits. Returns how many connections it was queued to. A connection
    /// whose queue is full is handled by the [`SlowConsumer`](crate::SlowConsumer)
    /// policy without waiting (it misses the message, or under `DropOldest`
    /// loses its oldest queued push instead), rather than slowing the rest.
    ///
    /// # Errors
    /// [`Error::Framing`] if the message does not encode or is over the limit.
    pub fn broadcast<M: Encode>(&self, msg: M) -> Result<usize> {
        self.broadcast_to(msg, None)
    }

    /// [`ServerHandle::broadcast`] to every connection but `except` (a chat
    /// server relaying a message to everyone but its sender).
    ///
    /// # Errors
    /// As [`ServerHandle::broadcast`].
    pub fn broadcast_except<M: Encode>(&self, except: ConnectionId, msg: M) -> Result<usize> {
        self.broadcast_to(msg, Some(except))
    }

    fn broadcast_to<M: Encode>(&self, msg: M, except: Option<ConnectionId>) -> Result<usize> {
        let frame = msg.encode()?;
        let conns = self.connections();
        let mut delivered = 0;
        for conn in conns.into_iter().filter(|c| Some(c.id()) != except) {
            let queued = conn
                .push_frame(frame.clone())
                .and_then(|frame| conn.offer_now(frame));
            if queued.is_ok() {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// Dials `addr` and serves the connection exactly like an accepted one:
    /// same handler, same limits (it takes one of the
    /// [`Config::max_connections`](crate::Config::max_connections) permits), in the registry, pushes and
    /// broadcasts reach it. Returns once the hello exchange is done (in the
    /// multiplexed profile) and the handler's `on_connect` has run, within
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout). This is how a peer dials another peer:
    /// whoever dialed, both ends serve the connection.
    ///
    /// `addr` is `HOST:PORT`, or `unix:PATH` for a Unix domain socket (as
    /// for a client); a [`Server::connector`](crate::Server::connector) is given it as written.
    ///
    /// # Errors
    /// [`Error::Closed`] when shutting down; [`Error::TooManyConnections`];
    /// [`Error::Connect`] when the connection fails (refused,
    /// unreachable, no answer in time); [`Error::HandshakeTimeout`] or the
    /// framing error of a failed hello exchange ([`Error::Framing`]).
    pub async fn connect(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Connection> {
        self.dial(&addr.to_string()).await
    }

    /// [`ServerHandle::connect`] to a Unix domain socket: dials `path` and
    /// serves the connection like an accepted one.
    ///
    /// # Errors
    /// As [`ServerHandle::connect`]; [`Error::Connect`] names the path.
    #[cfg(unix)]
    pub async fn connect_unix(&self, path: impl AsRef<std::path::Path>) -> Result<Connection> {
        let addr = format!(
            "{}{}",
            enchufe_engine::dial::UNIX_PREFIX,
            path.as_ref().display()
        );
        self.dial(&addr).await
    }

    /// Takes a permit, opens the stream with the engine's one dial within
    /// the handshake timeout (the TLS handshake included), and serves it.
    async fn dial(&self, addr: &str) -> Result<Connection> {
        use enchufe_engine::dial::{self as engine, Io};
        let shared = &self.shared;
        if shared.shutdown.is_cancelled() {
            return Err(Error::Closed);
        }
        let permit = shared
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::TooManyConnections)?;
        let limit = shared.handshake_timeout;
        let layer = &shared.dial_layer;
        #[cfg(feature = "tls")]
        let tls = layer.tls.as_ref();
        #[cfg(not(feature = "tls"))]
        let tls: Option<&engine::NoTls> = None;
        let deadline = tokio::time::Instant::now() + limit;
        let dialed = engine::dial(addr, tls, layer.connector.as_deref(), deadline)
            .await
            .map_err(|e| crate::layer::dial_error(addr, limit, e))?;
        let stream = match dialed.io {
            Io::Tcp(stream) => Stream::Tcp(stream),
            #[cfg(unix)]
            Io::Unix(stream) => Stream::Unix(stream),
            Io::Secure(stream) => Stream::Boxed(Box::pin(stream)),
            Io::Boxed(io) => Stream::Boxed(io),
        };
        let peer_addr = match (&stream, dialed.peer_addr) {
            (_, Some(addr)) => addr,
            #[cfg(unix)]
            (Stream::Unix(_), None) => UNIX_ADDR,
            (_, None) => UNKNOWN_ADDR,
        };
        self.serve_dialed(stream, peer_addr, permit).await
    }

    /// Serves a dialed stream like an accepted one; waits for the hello
    /// exchange and `on_connect`.
    async fn serve_dialed(
        &self,
        stream: Stream,
        peer_addr: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> Result<Connection> {
        let shared = &self.shared;
        let (ready, connected) = oneshot::channel();
        (shared.spawner.0)(
            shared,
            NewConnection {
                stream,
                layer: Layer::Plain,
                peer_addr,
                permit,
                address_slot: None,
                ready: Some(ready),
                doors: None,
            },
        );
        connected.await.unwrap_or(Err(Error::Closed))
    }

    /// Counters so far: connections accepted, pushes dropped, slow clients
    /// disconnected.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot(&self.shared.memory)
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Shuts down gracefully: stops accepting, stops reading new requests,
    /// lets handlers already running finish and their replies be sent, then
    /// closes every connection. Handlers still running after the grace period
    /// ([`Config::shutdown_grace`](crate::Config::shutdown_grace)) are cancelled. Returns when every task of
    /// the server has ended, with what became of the requests in flight:
    /// answered, refused (`shutting down`) or cancelled. Calling it again
    /// just waits (and reports the same).
    pub async fn shutdown(&self) -> ShutdownReport {
        let shared = &self.shared;
        shared.shutdown.cancel();
        shared.raise_all(flag::SHUTDOWN);
        enchufe_engine::grace::drain(&shared.tracker, shared.grace, || {
            warn!(grace = ?shared.grace, "shutdown grace period over; cancelling handlers");
            shared.abort.cancel();
            shared.raise_all(flag::ABORT);
        })
        .await;
        let report = shared.counters.shutdown_report();
        // The counts cover only the requests in flight when the shutdown
        // began, not the server's life: the message says so, or "answered=0"
        // reads as "nothing was ever answered".
        info!(
            answered = report.answered,
            refused = report.refused,
            cancelled = report.cancelled,
            "stopped; of the requests in flight at shutdown:"
        );
        report
    }

    /// Waits until the server has stopped (after [`ServerHandle::shutdown`]
    /// was called, from this handle or another).
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await;
        self.shared.tracker.wait().await;
    }
}

impl Connection {
    /// The server this connection belongs to, to reach the others from a
    /// handler: push to another connection, broadcast (to all but this one
    /// with [`ServerHandle::broadcast_except`](crate::ServerHandle::broadcast_except)).
    /// `None` once the server is gone.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use enchufe::server::{handler_fn, Connection};
    ///
    /// // A chat room: every line goes to everyone else.
    /// let chat = handler_fn(|line: String, conn: Connection| async move {
    ///     if let Some(server) = conn.server() {
    ///         let _ = server.broadcast_except(conn.id(), format!("{}: {line}", conn.id()));
    ///     }
    ///     Ok::<_, Infallible>(None::<String>)
    /// });
    /// # let _ = chat;
    /// ```
    pub fn server(&self) -> Option<ServerHandle> {
        let shared = self.home().upgrade()?.downcast::<Shared>().ok()?;
        Some(ServerHandle::of(shared))
    }
}
