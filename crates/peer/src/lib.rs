//! enchufe's peer: one endpoint that both serves and dials.
//!
//! The course's peer-to-peer example starts two programs that are each a
//! server and a client; start them in the wrong order and the first one's
//! connect fails. A [`Peer`] serves a [`Handler`] like a
//! [`Server`] and dials other peers, retrying with
//! exponential backoff and jitter ([`Backoff`]) until they are up (with
//! no limit on attempts unless [`Config::backoff`] sets one), and
//! dialing again whenever a link is lost, so the start order no longer
//! matters and a restarted peer is found again.
//!
//! Peers speak the multiplexed profile with the peer flag in their hello
//! (`docs/PROTOCOL.md`), so **one TCP connection carries both directions**:
//! whoever dialed, either end can [`send`](Peer::send),
//! [`request`](Peer::request) and [`broadcast`](Peer::broadcast), and its
//! handler answers the other's requests. Peers are named by the node id each
//! sends in its hello ([`Config::new`]).
//!
//! ```text
//!     Peer "a"                                 Peer "b"
//!   +-----------+   one link, either dials   +-----------+
//!   | listener  |<==========================>| listener  |
//!   | handler   |   requests both ways,      | handler   |
//!   | dialers   |   pings keep it honest     | dialers   |
//!   +-----------+                            +-----------+
//! ```
//!
//! Two peers that dial each other at the same moment get two connections;
//! each end keeps the one dialed by the peer with the smaller id and retires
//! the other ([`Connection::drain`](enchufe_server::Connection::drain): what
//! was already sent on it is still delivered), so exactly one link remains,
//! with no message exchanged to agree on it. Given each peer a static list
//! of the others ([`Peer::add_peer`]), a full mesh forms whatever the start
//! order.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe::peer::{Config, Peer};
//! use enchufe::server::handler_fn;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hello = |name: &'static str| handler_fn(move |msg: String, _conn| async move {
//!     Ok::<_, Infallible>(Some(format!("{name} got {msg}")))
//! });
//! let a = Peer::bind_with("127.0.0.1:0", hello("a"), Config::new("a")).await?;
//! let b = Peer::bind_with("127.0.0.1:0", hello("b"), Config::new("b")).await?;
//!
//! let id = a.connect(b.local_addr().to_string()).await?;
//! assert_eq!(id, "b");
//! // One link, both directions.
//! let reply: String = a.request("b", "hola").await?;
//! assert_eq!(reply, "b got hola");
//! b.wait_for("a").await;
//! let reply: String = b.request("a", "hi").await?;
//! assert_eq!(reply, "a got hi");
//! # a.close().await; b.close().await;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enchufe_engine::retry::{retry, GaveUp, Start};
use enchufe_framing::{Decode, Encode};
use enchufe_server::{Connection, Handler, Server, ServerHandle};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument};

mod config;
mod error;
mod table;

pub use config::Config;
pub use error::{Error, Result};

/// How [`Peer::connect`] and [`Peer::add_peer`] tell a Unix socket's path
/// from a `HOST:PORT`: `unix:/run/peer-a.sock` (the client's convention).
pub use enchufe_engine::dial::UNIX_PREFIX;
/// How dialing retries: the same backoff as a reconnecting client's.
pub use enchufe_engine::retry::Backoff;
/// What a send or request to a peer without a link does (the same policy
/// as a reconnecting client's).
pub use enchufe_engine::retry::WhileDown;
pub use table::PeerEvent;
use table::{PeerHandler, Table};

/// An endpoint that serves a [`Handler`] and dials other peers (as quinn's
/// `Endpoint` is both client and server). Cheap to clone; every clone is the
/// same peer.
#[derive(Debug, Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    server: ServerHandle,
    table: Arc<Table>,
    backoff: Backoff,
    while_down: WhileDown,
    /// Stops the dialers.
    closing: CancellationToken,
    /// The dialers, waited for by `close`.
    dialers: TaskTracker,
}

impl Peer {
    /// Binds the listening side with the default [`Config`] (a random id)
    /// and starts serving `handler`.
    ///
    /// # Errors
    /// [`Error::Server`] if the address cannot be bound.
    pub async fn bind<H: Handler>(
        addr: impl tokio::net::ToSocketAddrs + std::fmt::Display,
        handler: H,
    ) -> Result<Peer> {
        Self::bind_with(addr, handler, Config::default()).await
    }

    /// [`Peer::bind`] with a configuration.
    ///
    /// # Errors
    /// As [`Peer::bind`].
    pub async fn bind_with<H: Handler>(
        addr: impl tokio::net::ToSocketAddrs + std::fmt::Display,
        handler: H,
        config: Config,
    ) -> Result<Peer> {
        let server = Server::bind(addr).await?;
        Ok(Self::serve(server, handler, config))
    }

    /// Serves `handler` as a peer on a server built elsewhere: one that
    /// accepts from another transport ([`Server::from_accept`]) and dials
    /// through it ([`Server::connector`]), as `enchufe::sim` does for a
    /// simulated network. The server's configuration is replaced by the
    /// peer's ([`Config::server`], made multiplexed with the peer's id and
    /// keepalive). Must be called within a Tokio runtime.
    pub fn from_server<H: Handler>(server: Server, handler: H, config: Config) -> Peer {
        Self::serve(server, handler, config)
    }

    fn serve<H: Handler>(server: Server, handler: H, config: Config) -> Peer {
        let table = Arc::new(Table::new(config.id.clone(), config.event_queue));
        #[cfg(feature = "tls")]
        let server = match config.tls.clone() {
            Some((acceptor, connector)) => server.tls(acceptor).dial_tls(connector),
            None => server,
        };
        let server = server
            .with_config(config.server_config())
            .serve(PeerHandler {
                inner: handler,
                table: table.clone(),
            });
        Peer {
            inner: Arc::new(Inner {
                server,
                table,
                backoff: config.backoff,
                while_down: config.while_down,
                closing: CancellationToken::new(),
                dialers: TaskTracker::new(),
            }),
        }
    }

    /// Binds the listening side on a Unix domain socket at `path` (which
    /// must not exist yet) and starts serving `handler`. Other peers reach
    /// it with the address `unix:PATH` ([`Peer::connect`],
    /// [`Peer::add_peer`]); this peer can dial both kinds.
    ///
    /// # Errors
    /// [`Error::Server`] if the socket cannot be bound there.
    #[cfg(unix)]
    pub fn bind_unix<H: Handler>(
        path: impl AsRef<std::path::Path>,
        handler: H,
        config: Config,
    ) -> Result<Peer> {
        let server = Server::bind_unix(path)?;
        Ok(Self::serve(server, handler, config))
    }

    /// This peer's node id.
    pub fn id(&self) -> &str {
        self.inner.table.me()
    }

    /// The address this peer listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.server.local_addr()
    }

    /// The serving side: every connection (peer links, and any plain
    /// multiplexed client that connected), stats.
    pub fn server(&self) -> &ServerHandle {
        &self.inner.server
    }

    /// The ids of the peers with a live link, sorted.
    pub fn peers(&self) -> Vec<String> {
        self.inner
            .table
            .all()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// The live link to peer `id`: its address, pushes, requests.
    pub fn link(&self, id: &str) -> Option<Connection> {
        self.inner.table.get(id)
    }

    /// Links coming and going. Each receiver gets every event from the
    /// moment it subscribes; one that falls more than
    /// [`Config::event_queue`] events behind misses the oldest
    /// (`RecvError::Lagged` says how many). [`Peer::peers`] is always the
    /// current truth.
    pub fn events(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.table.subscribe()
    }

    /// Waits until a link to peer `id` is up. Unbounded: wrap it in a
    /// timeout where the peer may never come.
    pub async fn wait_for(&self, id: &str) {
        let mut changed = self.inner.table.watch();
        while self.inner.table.get(id).is_none() {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// Dials `addr` until the peer there is up, and returns its id. From
    /// then on the link is kept: whenever it is lost, `addr` is dialed again
    /// (with the same backoff) until the peer is back or this peer closes.
    /// `addr` is `HOST:PORT`, or `unix:PATH` for a peer on a Unix socket
    /// ([`Peer::bind_unix`]).
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the backoff's attempts run out, if
    /// [`Config::backoff`] sets a limit (nothing is dialed any more; by
    /// default there is none); [`Error::Closed`] if this peer closes first.
    ///
    /// `addr` is anything that prints as an address: a `SocketAddr` (as
    /// [`Peer::local_addr`] gives), `"host:port"`, or `"unix:PATH"`.
    pub async fn connect(&self, addr: impl ToString) -> Result<String> {
        let (first, up) = tokio::sync::oneshot::channel();
        self.spawn_dialer(addr.to_string(), Some(first));
        up.await.unwrap_or(Err(Error::Closed))
    }

    /// [`Peer::connect`] in the background: returns at once. Failures show
    /// as [`PeerEvent::Unreachable`].
    pub fn add_peer(&self, addr: impl ToString) {
        self.spawn_dialer(addr.to_string(), None);
    }

    fn spawn_dialer(&self, addr: String, first: Option<FirstLink>) {
        let span = info_span!("dialer", me = %self.id(), peer = %addr);
        self.inner
            .dialers
            .spawn(keep_linked(self.inner.clone(), addr, first).instrument(span));
    }

    /// Sends a one-way message to peer `id`; its handler gets it and its
    /// reply, if any, is dropped. Returns once the message is queued.
    ///
    /// # Errors
    /// [`Error::NotConnected`] when there is no live link to `id` (after
    /// waiting, under [`WhileDown::Wait`]); [`Error::Server`] as
    /// [`Connection::push`].
    pub async fn send<M: Encode>(&self, id: &str, msg: M) -> Result<()> {
        let body = msg.encode().map_err(enchufe_server::Error::from)?;
        self.send_body(id, body).await
    }

    /// The live link to `id`, waiting for one as [`Config::while_down`] says.
    async fn live_link(&self, id: &str) -> Result<Connection> {
        if let Some(link) = self.inner.table.get(id) {
            return Ok(link);
        }
        if let WhileDown::Wait(bound) = self.inner.while_down {
            let wait = tokio::time::timeout(bound, self.wait_for(id));
            tokio::select! {
                _ = wait => {}
                () = self.inner.closing.cancelled() => return Err(Error::Closed),
            }
        }
        self.inner
            .table
            .get(id)
            .ok_or_else(|| Error::NotConnected(id.to_owned()))
    }

    /// Queues an encoded message on the link to `id`. A link retired under
    /// us (a duplicate just dropped) refuses it without having sent it, so
    /// it is tried again on the link that replaced it.
    async fn send_body(&self, id: &str, body: bytes::Bytes) -> Result<()> {
        for _ in 0..3 {
            let link = self.live_link(id).await?;
            match link.push(body.clone()).await {
                Err(enchufe_server::Error::Closed) => tokio::task::yield_now().await,
                other => return other.map_err(Error::from),
            }
        }
        Err(Error::NotConnected(id.to_owned()))
    }

    /// Sends a request to peer `id` and waits for its handler's reply,
    /// within the server config's
    /// [`request_timeout`](enchufe_server::PeerLinks::request_timeout).
    ///
    /// # Errors
    /// [`Error::NotConnected`]; [`Error::Server`] as
    /// [`Connection::request`] (timeout, remote error, link lost).
    pub async fn request<M: Encode, R: Decode>(&self, id: &str, msg: M) -> Result<R> {
        let link = self.live_link(id).await?;
        Ok(link.request(msg).await?)
    }

    /// Sends a one-way message to every peer with a live link, encoding it
    /// once. Returns how many peers it was queued for.
    ///
    /// # Errors
    /// [`Error::Server`] if the message does not encode. A peer whose link
    /// fails meanwhile is skipped (and not counted).
    pub async fn broadcast<M: Encode>(&self, msg: M) -> Result<usize> {
        let body = msg.encode().map_err(enchufe_server::Error::from)?;
        let mut sent = 0;
        for (id, _) in self.inner.table.all() {
            match self.send_body(&id, body.clone()).await {
                Ok(()) => sent += 1,
                Err(e) => debug!(peer = %id, error = %e, "broadcast skipped a peer"),
            }
        }
        Ok(sent)
    }

    /// Closes the peer gracefully: stops dialing and accepting, lets
    /// handlers in flight finish (within the server's shutdown grace), sends
    /// what is queued, closes every link, and returns when all of it has
    /// ended. Every clone is closed.
    pub async fn close(&self) {
        self.inner.closing.cancel();
        self.inner.dialers.close();
        self.inner.server.shutdown().await;
        self.inner.dialers.wait().await;
    }

    /// Waits until the peer has closed ([`Peer::close`], from any clone) and
    /// every link and task of it has ended.
    pub async fn wait_idle(&self) {
        self.inner.closing.cancelled().await;
        self.inner.server.stopped().await;
        self.inner.dialers.wait().await;
    }
}

/// Where a dialer reports its first link (for [`Peer::connect`]).
type FirstLink = tokio::sync::oneshot::Sender<Result<String>>;

/// Keeps a link to the peer at `addr`: dials with backoff until it answers,
/// then waits for that peer to go down (by any link), then dials again
/// (after a wait: a lost link counts as a failed attempt, as for a
/// reconnecting client).
async fn keep_linked(inner: Arc<Inner>, addr: String, mut first: Option<FirstLink>) {
    let mut start = Start::Now;
    loop {
        let conn = tokio::select! {
            conn = dial(&inner, &addr, start) => conn,
            () = inner.closing.cancelled() => break,
        };
        start = Start::AfterLoss;
        let id = match conn {
            Ok(conn) => match conn.node_id() {
                Some(id) => id.to_owned(),
                None => {
                    warn!("dialed something that is not a peer; giving up");
                    conn.close();
                    break;
                }
            },
            // Our own close, racing a dial: not the other peer's failure.
            Err(_) if inner.closing.is_cancelled() => break,
            Err(e) => {
                warn!(error = %e, "peer unreachable; giving up");
                inner
                    .table
                    .emit(PeerEvent::Unreachable { addr: addr.clone() });
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                }
                return;
            }
        };
        let linked = tokio::select! {
            linked = linked_to(&inner.table, &id, inner.backoff.max_delay) => linked,
            () = inner.closing.cancelled() => break,
        };
        if let Some(first) = first.take() {
            let _ = first.send(if linked {
                Ok(id.clone())
            } else {
                Err(Error::NotConnected(id.clone()))
            });
        }
        if linked {
            // Closing first: a close also takes the link down, and that is
            // not a reason to dial again.
            tokio::select! {
                biased;
                () = inner.closing.cancelled() => break,
                () = down(&inner.table, &id) => debug!(peer = %id, "link lost; dialing again"),
            }
        }
    }
    if let Some(first) = first {
        let _ = first.send(Err(Error::Closed));
    }
}

/// One successful dial, retrying per the backoff (the engine's one retry
/// loop, as a reconnecting client's).
async fn dial(inner: &Inner, addr: &str, start: Start) -> Result<Connection> {
    let attempt = || async {
        let conn = inner.server.connect(addr).await?;
        if conn.is_peer() {
            return Ok(conn);
        }
        conn.close();
        Err(enchufe_server::Error::Unsupported(
            enchufe_server::Unsupported::NotAPeer,
        ))
    };
    // Only our own closing ends the dialing (and a dial of something that
    // is not a peer); a link closed during its hello (a peer dying as we
    // dial it) is retried like any other failure.
    let retryable = |e: &enchufe_server::Error| {
        !inner.closing.is_cancelled() && !matches!(e, enchufe_server::Error::Unsupported(_))
    };
    match retry(&inner.backoff, start, attempt, retryable).await {
        Ok((conn, _)) => Ok(conn),
        Err(_) if inner.closing.is_cancelled() => Err(Error::Closed),
        Err(GaveUp { last, .. }) if matches!(last, enchufe_server::Error::Unsupported(_)) => {
            Err(Error::Server(last))
        }
        Err(GaveUp { attempts, last }) => Err(Error::Unreachable {
            addr: addr.to_owned(),
            attempts,
            last,
        }),
    }
}

/// Waits (up to `limit`) until the table has a link to `id`: right away
/// when our dial won, or when the other end's dial that beat it arrives.
async fn linked_to(table: &Table, id: &str, limit: Duration) -> bool {
    let mut changed = table.watch();
    let wait = async {
        while table.get(id).is_none() {
            if changed.changed().await.is_err() {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(limit, wait).await.unwrap_or(false)
}

/// Waits until the table has no link to `id`.
async fn down(table: &Table, id: &str) {
    let mut changed = table.watch();
    while table.get(id).is_some() {
        if changed.changed().await.is_err() {
            return;
        }
    }
}
