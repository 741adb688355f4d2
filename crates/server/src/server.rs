use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use enchufe_engine::net::{Accept, Connect};
use enchufe_framing::Encode;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::connection::Parts;
use crate::door::{Door, Doors, Route};
use crate::layer::{BoxIo, DialLayer, Layer, Layered};
use crate::outbox::{flag, Budget};
use crate::stats::{Counters, ShutdownReport, Stats};
use crate::task::{serve, Ctx};
use crate::{
    Config, Connection, ConnectionId, Disconnect, Error, Handler, PeerLinks, Profile, Result,
};

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

/// Where a server accepts connections.
#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener),
    /// Any other transport ([`Server::from_accept`]).
    Custom(Box<dyn Accept>),
}

/// An accepted or dialed connection, before it is served.
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    /// Dialed and wrapped already (TLS), or of another transport (accepted
    /// by [`Server::from_accept`], dialed by [`Server::connector`]): boxed,
    /// so the connection loop is compiled once for every such transport,
    /// not once per stream type.
    Boxed(BoxIo),
}

impl Listener {
    async fn accept(&mut self) -> std::io::Result<(Stream, SocketAddr)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, addr) = listener.accept().await?;
                Ok((Stream::Tcp(stream), addr))
            }
            #[cfg(unix)]
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), UNIX_ADDR))
            }
            Listener::Custom(listener) => {
                let (io, addr) = listener.accept().await?;
                Ok((Stream::Boxed(io), addr))
            }
        }
    }
}

/// What [`Connection::peer_addr`] and [`ServerHandle::local_addr`] say for a
/// Unix socket, which has no IP address: `0.0.0.0:0`.
const UNIX_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The peer address of a dialed connection whose connector could not tell:
/// `0.0.0.0:0`, as for a Unix socket.
const UNKNOWN_ADDR: SocketAddr = UNIX_ADDR;

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
        enchufe_engine::meter::register("server", crate::stats::ERROR_KINDS);
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
    /// [`Connection::peer_addr`] and [`ServerHandle::local_addr`] say
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
        let listener = UnixListener::bind(path).map_err(|source| Error::Bind {
            addr: path.display().to_string(),
            source,
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
    /// [`Stats::tls_failures`] and logged; the handler never sees it.
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
    /// counted in [`Stats::ws_rejected`] and logged. The listener's
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
        ServerHandle { shared }
    }

    /// Serves until `signal` completes (for example `tokio::signal::ctrl_c()`;
    /// its output is ignored), then shuts down gracefully.
    pub async fn run<H: Handler, T>(self, handler: H, signal: impl Future<Output = T>) {
        let handle = self.serve(handler);
        let _ = signal.await;
        handle.shutdown().await;
    }
}

/// Binds a TCP listener; [`Error::Bind`] names the address asked for.
async fn bind_tcp(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<TcpListener> {
    let shown = addr.to_string();
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: shown,
        source,
    })
}

/// State shared by the accept loop, the connection tasks and every handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// This very `Shared`, for connections to reach their server
    /// ([`Connection::server`]) without keeping it alive.
    me: Weak<Shared>,
    local_addr: SocketAddr,
    /// Live connections, for push-by-id, broadcast and counting. Plain data
    /// behind a std mutex: never held across an await.
    registry: Mutex<HashMap<ConnectionId, Connection>>,
    shutdown: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    handshake_timeout: Duration,
    counters: Arc<Counters>,
    /// Bytes queued for every connection together.
    budget: Arc<Budget>,
    /// Bytes of large frames arriving on every connection together (the
    /// connections' wires share it through `Ctx`).
    memory: enchufe_framing::MemoryBudget,
    /// Connection permits, for accepted and dialed connections alike.
    permits: Arc<Semaphore>,
    /// Accepted connections per client address, when limited.
    per_address: Option<crate::limits::PerAddress>,
    next_id: AtomicU64,
    spawner: Spawner,
    /// The WebSocket listener's address ([`Server::ws`]).
    ws_addr: Option<SocketAddr>,
    /// How dialed connections are wrapped ([`Server::dial_tls`]).
    dial_layer: DialLayer,
}

/// Starts serving one connection, accepted or dialed. The handler's type
/// is erased here so that [`ServerHandle`] need not carry it.
struct Spawner(Box<SpawnFn>);

type SpawnFn = dyn Fn(&Arc<Shared>, NewConnection) + Send + Sync;

/// A connection about to be served.
struct NewConnection {
    stream: Stream,
    /// What runs on it first (TLS or WebSocket handshake), in its task.
    layer: Layer,
    peer_addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    /// Its place among its address's connections, when they are limited.
    address_slot: Option<crate::limits::AddressSlot>,
    /// The listener's doors besides frames, when it has any.
    doors: Option<Arc<Doors>>,
    /// Dialed by [`ServerHandle::connect`], which waits on `ready` for the
    /// hello exchange; `None` for an accepted connection.
    ready: Option<oneshot::Sender<Result<Connection>>>,
}

impl Spawner {
    fn new<H: Handler>(ctx: Arc<Ctx<H>>) -> Spawner {
        Spawner(Box::new(move |shared, new| {
            let id = ConnectionId(shared.next_id.fetch_add(1, Ordering::Relaxed));
            let outbound = new.ready.is_some();
            if !outbound {
                Counters::add(&shared.counters.connections_accepted, 1);
            }
            let span = info_span!("conn", id = id.0, peer = %new.peer_addr, outbound);
            let ctx = ctx.clone();
            let shared_for_task = shared.clone();
            shared.tracker.spawn(
                async move {
                    let NewConnection {
                        stream,
                        layer,
                        peer_addr,
                        permit,
                        address_slot,
                        ready,
                        doors,
                    } = new;
                    let shared = &*shared_for_task;
                    match stream {
                        Stream::Tcp(stream) => {
                            // Small request/reply frames must not wait for
                            // Nagle; batching is ours.
                            if let Err(e) = stream.set_nodelay(true) {
                                warn!(error = %e, "cannot set TCP_NODELAY");
                            }
                            let local_addr = stream.local_addr().unwrap_or(shared.local_addr);
                            let layered = match layer.handshake(stream, shared.layer_cx(&ctx)).await
                            {
                                Layered::Plain(stream) => match &doors {
                                    Some(doors) => match shared
                                        .routing(&ctx, doors, peer_addr)
                                        .tcp(stream)
                                        .await
                                    {
                                        Route::Frames(stream) => Layered::Plain(stream),
                                        Route::FramesBoxed(io) => Layered::Boxed(io),
                                        Route::Gone => Layered::Gone,
                                    },
                                    None => Layered::Plain(stream),
                                },
                                Layered::Boxed(io) => match &doors {
                                    Some(doors) => {
                                        match shared.routing(&ctx, doors, peer_addr).boxed(io).await
                                        {
                                            Route::Frames(io) | Route::FramesBoxed(io) => {
                                                Layered::Boxed(io)
                                            }
                                            Route::Gone => Layered::Gone,
                                        }
                                    }
                                    None => Layered::Boxed(io),
                                },
                                Layered::Gone => Layered::Gone,
                            };
                            match layered {
                                Layered::Plain(stream) => {
                                    serve_connection(
                                        stream, peer_addr, local_addr, id, ready, &ctx, shared,
                                    )
                                    .await
                                }
                                Layered::Boxed(io) => {
                                    serve_connection(
                                        io, peer_addr, local_addr, id, ready, &ctx, shared,
                                    )
                                    .await
                                }
                                Layered::Gone => {}
                            }
                        }
                        #[cfg(unix)]
                        Stream::Unix(stream) => match layer
                            .handshake(stream, shared.layer_cx(&ctx))
                            .await
                        {
                            Layered::Plain(stream) => {
                                serve_connection(
                                    stream, peer_addr, UNIX_ADDR, id, ready, &ctx, shared,
                                )
                                .await
                            }
                            Layered::Boxed(io) => {
                                serve_connection(io, peer_addr, UNIX_ADDR, id, ready, &ctx, shared)
                                    .await
                            }
                            Layered::Gone => {}
                        },
                        Stream::Boxed(io) => {
                            let local_addr = shared.local_addr;
                            match layer.handshake(io, shared.layer_cx(&ctx)).await {
                                Layered::Plain(io) | Layered::Boxed(io) => {
                                    serve_connection(
                                        io, peer_addr, local_addr, id, ready, &ctx, shared,
                                    )
                                    .await
                                }
                                Layered::Gone => {}
                            }
                        }
                    }
                    drop((permit, address_slot));
                }
                .instrument(span),
            );
        }))
    }
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

impl Shared {
    /// What a connection's layer needs for its handshake.
    fn layer_cx<H: Handler>(&self, ctx: &Ctx<H>) -> crate::layer::Context<'_> {
        crate::layer::Context {
            counters: &self.counters,
            deadline: self.handshake_timeout,
            max_frame_length: ctx.config.max_frame_length,
            frame_timeout: ctx.config.frame_timeout,
            shutdown: &self.shutdown,
        }
    }

    /// What the front door needs to route a connection to its protocol.
    fn routing<'a, H: Handler>(
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

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Connection>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells every live connection's driver (shutdown, abort). A connection
    /// registered after this checks the tokens itself (`serve_connection`),
    /// so none is missed: both sides go through the registry's lock.
    fn raise_all(&self, flag: u8) {
        for conn in self.registry().values() {
            conn.signal().raise(flag);
        }
    }
}

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
    pub(crate) fn of(shared: Arc<Shared>) -> ServerHandle {
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
    /// [`Config::max_connections`] permits), in the registry, pushes and
    /// broadcasts reach it. Returns once the hello exchange is done (in the
    /// multiplexed profile) and the handler's `on_connect` has run, within
    /// [`Config::handshake_timeout`]. This is how a peer dials another peer:
    /// whoever dialed, both ends serve the connection.
    ///
    /// `addr` is `HOST:PORT`, or `unix:PATH` for a Unix domain socket (as
    /// for a client); a [`Server::connector`] is given it as written.
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
    /// ([`Config::shutdown_grace`]) are cancelled. Returns when every task of
    /// the server has ended, with what became of the requests in flight:
    /// answered, refused (`shutting down`) or cancelled. Calling it again
    /// just waits (and reports the same).
    pub async fn shutdown(&self) -> ShutdownReport {
        let shared = &self.shared;
        shared.shutdown.cancel();
        shared.raise_all(flag::SHUTDOWN);
        shared.tracker.close();
        if tokio::time::timeout(shared.grace, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(grace = ?shared.grace, "shutdown grace period over; cancelling handlers");
            shared.abort.cancel();
            shared.raise_all(flag::ABORT);
            shared.tracker.wait().await;
        }
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

async fn accept_loop(
    mut listener: Listener,
    layer: Layer,
    doors: Option<Arc<Doors>>,
    backoff_max: Duration,
    shared: Arc<Shared>,
) {
    let mut backoff = Duration::from_millis(1);
    info!("accepting connections");
    loop {
        // The permit comes first: at the limit we stop accepting, and the
        // kernel's backlog holds newcomers instead of our memory.
        let permit = tokio::select! {
            permit = shared.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
            () = shared.shutdown.cancelled() => break,
        };
        let (stream, peer_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(1);
                    accepted
                }
                Err(e) => {
                    warn!(error = %e, ?backoff, "accept failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shared.shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(backoff_max);
                    continue;
                }
            },
            () = shared.shutdown.cancelled() => break,
        };
        let address_slot = match &shared.per_address {
            Some(per) => match per.take(peer_addr.ip()) {
                Some(slot) => Some(slot),
                None => {
                    // Accepted and closed at once: the client learns now,
                    // rather than waiting in the backlog.
                    Counters::add(&shared.counters.refused_per_address, 1);
                    debug!(peer = %peer_addr, "too many connections from this address; closed");
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        (shared.spawner.0)(
            &shared,
            NewConnection {
                stream,
                layer: layer.clone(),
                peer_addr,
                permit,
                address_slot,
                ready: None,
                doors: doors.clone(),
            },
        );
    }
    info!("stopped accepting");
}

async fn serve_connection<H: Handler, Io>(
    io: Io,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    id: ConnectionId,
    mut ready: Option<oneshot::Sender<Result<Connection>>>,
    ctx: &Ctx<H>,
    shared: &Shared,
) where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + crate::role::Socket,
{
    let config = &ctx.config;
    let conn = Connection::new(Parts {
        id,
        peer_addr,
        local_addr,
        max_frame_length: config.max_frame_length,
        write_timeout: config.write_timeout,
        queue: config.outbound_queue,
        queue_bytes: config.max_queued_bytes,
        budget: shared.budget.clone(),
        // What this end dials speaks multiplexed: only an accepted
        // connection can wait for the other end's first frame.
        profile: match config.profile {
            Profile::Auto if ready.is_some() => Profile::Multiplexed,
            profile => profile,
        },
        policy: config.slow_consumer,
        counters: shared.counters.clone(),
        local_peer: config.peer.is_some(),
        outbound: ready.is_some(),
        server: shared.me.clone(),
        max_in_flight: config.max_in_flight,
        request_timeout: config
            .peer
            .as_ref()
            .map_or(PeerLinks::default().request_timeout, |p| p.request_timeout),
    });
    // Debug, not info: a line per accepted connection lets whoever can
    // connect write the log (20,000 bad connections were 20,000 lines) and
    // costs the accept path under a flood (RELIABILITY.md). The end of a
    // connection is still logged: at info when it ends normally, thinned
    // when it ends for bad input.
    debug!(outbound = ready.is_some(), "connected");
    {
        let mut registry = shared.registry();
        registry.insert(id, conn.clone());
        // Shutdown may have begun before this connection was registered.
        if shared.shutdown.is_cancelled() {
            conn.signal().raise(flag::SHUTDOWN);
        }
        if shared.abort.is_cancelled() {
            conn.signal().raise(flag::ABORT);
        }
    }
    #[cfg(feature = "metrics")]
    let open = enchufe_engine::meter::Open::new("server");
    let (reason, silent) = serve(ctx, &conn, io, &mut ready).await;
    #[cfg(feature = "metrics")]
    open.close(&reason, crate::stats::error_kind);
    // Out of the registry as soon as it is over, so that a client that has
    // seen its connection end never still counts.
    shared.registry().remove(&id);
    conn.close();
    conn.end_requests();
    conn.outbox().clear();
    if let Some(ready) = ready {
        // The dialer is still waiting: the hello exchange never completed.
        let _ = ready.send(Err(match reason {
            Disconnect::Error(e) => e,
            Disconnect::IdleTimeout => Error::HandshakeTimeout(config.handshake_timeout),
            Disconnect::PeerClosed => Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed by the other end during the hello",
            )),
            _ => Error::Closed,
        }));
        return;
    }
    match &reason {
        Disconnect::Error(e) => {
            if e.is_not_frames() {
                Counters::add(&shared.counters.not_frames, 1);
            }
            if e.is_profile_mismatch() {
                Counters::add(&shared.counters.profile_mismatches, 1);
            }
            if e.is_bad_input() {
                // Counted, and warned about at the 1st, 2nd, 4th, 8th...:
                // 20,000 bad connections write 15 warnings, not 20,000.
                // A reset or a cut is no malformed byte: say which it was.
                let what = if e.is_closed() {
                    "closed: reset or cut by the client"
                } else {
                    "closed: bad input"
                };
                crate::layer::rare_warn(&shared.counters.closed_for_bad_input, e, what);
            } else {
                warn!(error = %e, "closed");
            }
        }
        // Closed without a byte: counted, and logged as rarely as bad
        // input, since whoever can connect can make any number of them
        // (20,000 were 20,000 lines, 3.5 MB of log).
        Disconnect::PeerClosed if silent => {
            let (n, loud) = crate::layer::rarely(&shared.counters.empty_connections);
            if loud {
                info!(count = n, "closed before sending anything");
            } else {
                debug!(count = n, "closed before sending anything");
            }
        }
        other => info!(reason = %other, "closed"),
    }
    if AssertUnwindSafe(ctx.handler.on_disconnect(&conn, &reason))
        .catch_unwind()
        .await
        .is_err()
    {
        warn!("on_disconnect panicked");
    }
}

use futures::FutureExt;
use std::panic::AssertUnwindSafe;
