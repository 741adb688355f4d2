//! The server: [`Server`] binds and configures, [`ServerHandle`] runs.
//!
//! - `listener`: where connections come from (TCP, Unix, any `Accept`).
//! - `accept`: the accept loop (permit first, backoff, per-address cap).
//! - `shared`: the state the accept loops, connection tasks and handles share.
//! - `spawn`: one connection's task: its layer, its door, the serving loop.
//! - `handle`: [`ServerHandle`]: connections, push, broadcast, dial, shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use enchufe_engine::net::{Accept, Connect};
#[cfg(unix)]
use tokio::net::UnixListener;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info_span, warn, Instrument};

use crate::door::{Door, Doors};
use crate::layer::{DialLayer, Layer};
use crate::outbox::Budget;
use crate::stats::Counters;
use crate::task::Ctx;
use crate::{Config, Error, Handler, Result};

mod accept;
mod handle;
mod listener;
mod shared;
mod spawn;

pub use handle::ServerHandle;
pub(crate) use shared::Shared;

use accept::accept_loop;
use listener::{bind_tcp, Listener, UNIX_ADDR};
use shared::Spawner;

/// A bound TCP listener, ready to serve a [`Handler`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use enchufe::server::{handler_fn, Server};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::bind("127.0.0.1:0").await?;
/// println!("listening on {}", server.local_addr()?);
/// let handle = server.serve(handler_fn(|req: String, _conn| async move {
///     Ok::<_, Infallible>(Some(format!("echo:{req}")))
/// }));
/// // ... clients connect to handle.local_addr() ...
/// handle.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    config: Config,
    /// What runs on each accepted connection before it is served (TLS).
    layer: Layer,
    /// Further listeners with their own layer (WebSocket), served by the
    /// same handler, registry and limits.
    extra: Vec<(Listener, Layer)>,
    /// How [`ServerHandle::connect`] wraps what it dials.
    dial_layer: DialLayer,
    /// Protocols served on the main listener beside frames (HTTP,
    /// WebSocket), told apart by their first bytes.
    doors: Doors,
}
impl Server {
    /// Binds a listener (IPv4 or IPv6; port 0 picks a free port).
    ///
    /// # Errors
    /// [`Error::Bind`] when no address could be bound.
    pub async fn bind(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Server> {
        Ok(Self::from_listener(bind_tcp(addr).await?))
    }

    /// Serves on a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener) -> Server {
        Self::on(Listener::Tcp(listener))
    }

    /// Serves the connections of any transport: a simulated network
    /// (`enchufe::sim`), an in-memory one in tests, your own. Everything
    /// else is as over TCP: the same handler, profiles, limits, permits
    /// (taken before each `accept`), backoff on accept errors, layers
    /// (`Server::tls`, feature `tls`, runs on what it accepts) and shutdown. Connections
    /// are served boxed; the TCP path ([`Server::bind`]) is not.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::net::SocketAddr;
    /// use enchufe::net::{Accept, BoxFuture, BoxIo};
    /// use enchufe::server::{handler_fn, Server};
    ///
    /// /// Connections handed over a channel: one end of a `duplex` each.
    /// #[derive(Debug)]
    /// struct InMemory(tokio::sync::mpsc::Receiver<tokio::io::DuplexStream>);
    ///
    /// impl Accept for InMemory {
    ///     fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
    ///         Box::pin(async move {
    ///             let io = self.0.recv().await.ok_or(std::io::ErrorKind::BrokenPipe)?;
    ///             Ok((Box::pin(io) as BoxIo, "127.0.0.1:1".parse().unwrap()))
    ///         })
    ///     }
    ///     fn local_addr(&self) -> std::io::Result<SocketAddr> {
    ///         Ok("127.0.0.1:2".parse().unwrap())
    ///     }
    /// }
    ///
    /// let (connect, accepted) = tokio::sync::mpsc::channel(8);
    /// let handle = Server::from_accept(InMemory(accepted)).serve(handler_fn(
    ///     |req: String, _conn| async move { Ok::<_, std::convert::Infallible>(Some(req)) },
    /// ));
    /// let (mut ours, theirs) = tokio::io::duplex(4096);
    /// connect.send(theirs).await.unwrap();
    /// // One frame (length 2, "hi") each way: the plain profile's echo.
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// ours.write_all(b"\0\0\0\x02hi").await.unwrap();
    /// let mut echoed = [0; 6];
    /// ours.read_exact(&mut echoed).await.unwrap();
    /// assert_eq!(&echoed, b"\0\0\0\x02hi");
    /// # handle.shutdown().await;
    /// # }
    /// ```
    pub fn from_accept(listener: impl Accept) -> Server {
        Self::on(Listener::Custom(Box::new(listener)))
    }

    /// Opens the connections of [`ServerHandle::connect`] (a peer dialing
    /// another peer) with `connector` in place of TCP; the address is
    /// passed as given. `Server::dial_tls` (feature `tls`) is not applied on top.
    #[must_use]
    pub fn connector(mut self, connector: impl Connect) -> Server {
        self.dial_layer.connector = Some(Arc::new(connector));
        self
    }

    fn on(listener: Listener) -> Server {
        // Every server is built through here: its metric series exist from
        // now on, before its first connection.
        #[cfg(feature = "metrics")]
        enchufe_engine::meter::register("server", crate::stats::OWN_ERROR_KINDS);
        Server {
            listener,
            config: Config::default(),
            layer: Layer::Plain,
            extra: Vec::new(),
            dial_layer: DialLayer::default(),
            doors: Doors::default(),
        }
    }

    /// Binds a Unix domain socket at `path` (which must not exist yet).
    /// Everything else is as over TCP: the same handler, profiles, limits
    /// and shutdown. A Unix connection has no IP address:
    /// [`Connection::peer_addr`](crate::Connection::peer_addr) and [`ServerHandle::local_addr`] say
    /// `0.0.0.0:0`.
    ///
    /// # Errors
    /// [`Error::Bind`] when the socket cannot be created there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("enchufe-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("echo.sock");
    /// # let _ = std::fs::remove_file(&path);
    /// let server = enchufe::server::Server::bind_unix(&path)?;
    /// # drop(server); std::fs::remove_file(&path)?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(unix)]
    pub fn bind_unix(path: impl AsRef<std::path::Path>) -> Result<Server> {
        let path = path.as_ref();
        let listener = UnixListener::bind(path).map_err(|source| {
            Error::Bind(crate::AddrError::new(path.display().to_string(), source))
        })?;
        Ok(Self::on(Listener::Unix(listener)))
    }

    /// Serves TLS on this server's listener (the one given to
    /// [`Server::bind`], [`Server::from_listener`] or
    /// [`Server::bind_unix`]): each accepted connection completes a TLS
    /// handshake within [`Config::handshake_timeout`] in its own task, then
    /// is served exactly as a TCP one. A connection whose handshake fails
    /// (a plain client, an untrusted or wrongly named certificate on the
    /// client's side, a timeout) is closed, counted in
    /// [`Stats::tls_failures`](crate::Stats::tls_failures) and logged; the handler never sees it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    /// # let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    /// use enchufe::server::{handler_fn, tls, Server};
    /// let acceptor = tls::Acceptor::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    /// let server = Server::bind("127.0.0.1:0").await?.tls(acceptor);
    /// let handle = server.serve(handler_fn(|req: String, _conn| async move {
    ///     Ok::<_, std::convert::Infallible>(Some(req))
    /// }));
    /// # handle.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, acceptor: crate::tls::Acceptor) -> Server {
        self.layer = Layer::Tls(acceptor);
        self
    }

    /// Serves TLS and plain connections on one port: a connection whose
    /// first byte starts a TLS handshake (a ClientHello) gets the TLS
    /// handshake of [`Server::tls`], any other is served as it is (a plain
    /// frame client, the course's Python client, `curl http://` at an HTTP
    /// door). A client that says nothing is taken for plain after
    /// [`Config::detect_timeout`] (a client waiting for a greeting).
    /// Behind TLS, the same doors and profiles are served as without it.
    ///
    /// The first byte of a TLS handshake (0x16) would begin a frame
    /// declaring over 352 MiB, so no frame under a sane
    /// [`Config::max_frame_length`] is taken for TLS. Only where plain
    /// traffic is acceptable on the network (a private one, a migration to
    /// TLS): with [`Server::tls`], a plain client is refused.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    /// # let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    /// use enchufe::server::{handler_fn, tls, Server};
    /// let acceptor = tls::Acceptor::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    /// let server = Server::bind("127.0.0.1:0").await?.tls_or_plain(acceptor);
    /// # let handle = server.serve(handler_fn(|req: String, _conn| async move {
    /// #     Ok::<_, std::convert::Infallible>(Some(req))
    /// # }));
    /// # handle.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_or_plain(mut self, acceptor: crate::tls::Acceptor) -> Server {
        self.layer = Layer::TlsOrPlain(acceptor);
        self
    }

    /// Dials with TLS: connections opened by [`ServerHandle::connect`] (a
    /// peer dialing another peer) run the client's side of a TLS handshake,
    /// checking the other end's certificate against the host dialed (or
    /// the connector's [`server_name`](crate::tls::Connector::server_name)),
    /// within [`Config::handshake_timeout`]. A failure is [`Error::Tls`].
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn dial_tls(mut self, connector: crate::tls::Connector) -> Server {
        self.dial_layer.tls = Some(connector);
        self
    }

    /// Also accepts WebSocket connections on `addr` (a browser's
    /// `new WebSocket("ws://HOST:PORT/")`), served by the same handler,
    /// registry, limits and shutdown as the main listener, in the same
    /// profile. Each WebSocket binary message carries one frame's payload
    /// (`docs/PROTOCOL.md`); messages over [`Config::max_frame_length`]
    /// end the connection like an oversize frame, and a message must be
    /// whole within [`Config::frame_timeout`] of its first frame (each
    /// refusal sends its RFC 6455 close code). The HTTP upgrade request
    /// must arrive within [`Config::handshake_timeout`] and fit in
    /// [`ws::Options::max_request_bytes`](crate::ws::Options::max_request_bytes);
    /// a plain `GET /` gets [`ws::Options::page`](crate::ws::Options::page)
    /// if one is set. A refused request is answered with an HTTP error,
    /// counted in [`Stats::ws_rejected`](crate::Stats::ws_rejected) and logged. The listener's
    /// address is [`ServerHandle::ws_addr`]. Plain WebSocket only (`ws://`;
    /// for `wss://` put a TLS-terminating proxy in front).
    ///
    /// # Errors
    /// [`Error::Bind`] when `addr` cannot be bound.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use enchufe::server::{handler_fn, ws, Server};
    /// let server = Server::bind("127.0.0.1:0").await?
    ///     .ws("127.0.0.1:0", ws::Options::default().page("<script>/* ... */</script>"))
    ///     .await?;
    /// let handle = server.serve(handler_fn(|req: String, _conn| async move {
    ///     Ok::<_, std::convert::Infallible>(Some(req))
    /// }));
    /// println!("browsers: http://{}/", handle.ws_addr().unwrap());
    /// # handle.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "ws")]
    pub async fn ws(
        mut self,
        addr: impl ToSocketAddrs + std::fmt::Display,
        options: crate::ws::Options,
    ) -> Result<Server> {
        let listener = bind_tcp(addr).await?;
        self.extra
            .push((Listener::Tcp(listener), Layer::Ws(Arc::new(options))));
        Ok(self)
    }

    /// Serves HTTP on this server's listener beside frames: a connection
    /// whose first byte is a capital letter (an HTTP method) goes to
    /// `door` (for HTTP/1.1, `enchufe::http::door(handler)`) with every
    /// limit of the listener (connection caps, the per-address cap, TLS,
    /// the handshake deadline, shutdown). Frames are told apart by their
    /// first byte, the high byte of their length (see the `door` module
    /// docs): a server whose [`Config::max_frame_length`] is 1 GiB or more
    /// would take large frames for HTTP, so keep it lower with a door.
    /// Only the main listener (`bind`, `from_listener`, `from_accept`)
    /// has doors; the WebSocket listener of [`Server::ws`] does not.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use enchufe::server::{handler_fn, Door, Server};
    /// # #[derive(Debug)] struct Hello;
    /// # impl Door for Hello {
    /// #     fn serve(&self, _: enchufe::net::BoxIo, _: std::net::SocketAddr,
    /// #         _: tokio_util::sync::CancellationToken) -> enchufe::net::BoxFuture<'static, ()> {
    /// #         Box::pin(async {})
    /// #     }
    /// # }
    /// let server = Server::bind("127.0.0.1:0").await?.http(Hello);
    /// let handle = server.serve(handler_fn(|req: String, _conn| async move {
    ///     Ok::<_, std::convert::Infallible>(Some(req))
    /// }));
    /// // frames and HTTP both at handle.local_addr()
    /// # handle.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn http(mut self, door: impl Door) -> Server {
        self.doors.http = Some(Arc::new(door));
        self
    }

    /// Sends every connection of the main listener to the HTTP door
    /// without looking at its bytes (an HTTP-only server). For
    /// `enchufe-http`'s `Server`; not covered by semver.
    #[doc(hidden)]
    #[must_use]
    pub fn http_only(mut self, door: impl Door) -> Server {
        self.doors.http = Some(Arc::new(door));
        self.doors.http_only = true;
        self
    }

    /// Serves WebSocket on this server's listener beside frames (and HTTP,
    /// with [`Server::http`]): an HTTP request that asks to upgrade
    /// becomes a WebSocket whose messages are frames, served by the same
    /// handler, registry and limits as TCP clients; without an HTTP door,
    /// other requests get `options`' page (`GET /`) or a refusal. One port
    /// for terminal clients, the page and the browsers' WebSocket.
    #[cfg(feature = "ws")]
    #[must_use]
    pub fn web(mut self, options: crate::ws::Options) -> Server {
        self.doors.web = Some(Arc::new(options));
        self
    }

    /// Replaces the configuration.
    #[must_use]
    pub fn with_config(mut self, config: Config) -> Server {
        self.config = config;
        self
    }

    /// The address the listener is bound to (with the real port when 0 was asked).
    ///
    /// # Errors
    /// [`Error::Io`] if the OS cannot tell.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        match &self.listener {
            Listener::Tcp(listener) => Ok(listener.local_addr()?),
            #[cfg(unix)]
            Listener::Unix(_) => Ok(UNIX_ADDR),
            Listener::Custom(listener) => Ok(listener.local_addr()?),
        }
    }

    /// Listens again with `backlog` on every TCP listener (Linux updates a
    /// listening socket's backlog in place). A failure is logged: the
    /// server still serves, with the backlog it had.
    fn set_backlog(&self, backlog: u32) {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        let listeners = std::iter::once(&self.listener).chain(self.extra.iter().map(|(l, _)| l));
        for listener in listeners {
            if let Listener::Tcp(tcp) = listener {
                if let Err(e) = socket2::SockRef::from(tcp).listen(backlog) {
                    warn!(error = %e, backlog, "cannot set the listen backlog");
                }
            }
        }
    }

    /// Starts serving in the background and returns a handle to the running
    /// server. Must be called within a Tokio runtime.
    pub fn serve<H: Handler>(self, handler: H) -> ServerHandle {
        if let Some(backlog) = self.config.listen_backlog {
            self.set_backlog(backlog);
        }
        let local_addr = self.local_addr().unwrap_or(UNIX_ADDR);
        let ws_addr = self
            .extra
            .iter()
            .find_map(|(listener, layer)| match (listener, layer) {
                #[cfg(feature = "ws")]
                (Listener::Tcp(l), Layer::Ws(_)) => l.local_addr().ok(),
                _ => None,
            });
        let shutdown = CancellationToken::new();
        let abort = CancellationToken::new();
        let memory = enchufe_framing::MemoryBudget::new(self.config.max_total_partial_bytes);
        let ctx = Arc::new(Ctx {
            handler: Arc::new(handler),
            framing: self.config.framing(),
            config: self.config.clone(),
            memory: memory.clone(),
        });
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            local_addr,
            registry: Mutex::new(HashMap::new()),
            shutdown,
            abort,
            tracker: TaskTracker::new(),
            grace: self.config.shutdown_grace,
            handshake_timeout: self.config.handshake_timeout,
            counters: Arc::new(Counters::default()),
            budget: Arc::new(Budget::new(self.config.max_total_queued_bytes)),
            memory,
            permits: Arc::new(Semaphore::new(self.config.max_connections)),
            per_address: self
                .config
                .max_connections_per_ip
                .map(crate::limits::PerAddress::new),
            next_id: AtomicU64::new(1),
            spawner: Spawner::new(ctx),
            ws_addr,
            dial_layer: self.dial_layer,
        });
        let doors = (self.doors.any() || self.doors.http_only).then(|| Arc::new(self.doors));
        let listeners = std::iter::once((self.listener, self.layer, doors))
            .chain(self.extra.into_iter().map(|(l, layer)| (l, layer, None)));
        for (listener, layer, doors) in listeners {
            let addr = match &listener {
                Listener::Tcp(l) => l.local_addr().unwrap_or(local_addr),
                #[cfg(unix)]
                Listener::Unix(_) => UNIX_ADDR,
                Listener::Custom(l) => l.local_addr().unwrap_or(local_addr),
            };
            let accept = accept_loop(
                listener,
                layer,
                doors,
                self.config.accept_backoff_max,
                shared.clone(),
            );
            shared
                .tracker
                .spawn(accept.instrument(info_span!("server", %addr)));
        }
        ServerHandle::of(shared)
    }

    /// Serves until `signal` completes (for example `tokio::signal::ctrl_c()`;
    /// its output is ignored), then shuts down gracefully.
    pub async fn run<H: Handler, T>(self, handler: H, signal: impl Future<Output = T>) {
        let handle = self.serve(handler);
        let _ = signal.await;
        handle.shutdown().await;
    }
}
