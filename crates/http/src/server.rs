//! [`Server`]: HTTP/1.1 over the same connection [`Driver`] as every enchufe
//! role, with [`RequestHead`] as the wire's codec instead of the length
//! prefix, and HTTP's [`Role`] ([`HttpRole`]): the driver's failures come
//! out as one [`Cut`], which the connection's loop (`serve`), a request
//! body's pump and a reply's stream each read in their own way (`408`, a
//! refusal's status, a body that stopped arriving, a reply cut short).

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use enchufe_engine::driver::{self, Deadlines};
use enchufe_engine::role::{Failure, Output, Role};
use enchufe_engine::Signal;
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::BodySender;
use crate::message::Streamed;
use crate::rules::Framing;
use crate::{Body, Handler, Limits, Refusal, Request, RequestHead, Response};

/// The server's limits and deadlines.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// What a request head may hold ([`Limits`]: 16 KiB, 64 headers).
    pub limits: Limits,
    /// A head that began arriving must be whole within this (`408`, then
    /// close). Default 10 s: a client on a slow link sends a head in one
    /// round trip; one that trickles it is holding the connection.
    pub head_timeout: Duration,
    /// A connection with no request for this long is closed (the keep-alive
    /// timeout). Default 30 s: idle connections cost a socket each.
    pub idle_timeout: Duration,
    /// A reply that makes no write progress for this long is dropped with
    /// its connection. Default 10 s.
    pub write_timeout: Duration,
    /// The longest reply body plus head. Default 8 MiB (the framing
    /// default); a larger reply is answered `500`.
    pub max_response: usize,
    /// The longest request body, declared (`Content-Length`, refused
    /// before the handler runs) or counted as chunks arrive: past it the
    /// reply is `413` and the connection is closed. Default 8 MiB, as
    /// [`Config::max_response`]: the body is streamed ([`Body`]), so this
    /// bounds what a handler is offered, not memory; raise it for uploads.
    pub max_body: u64,
    /// After a reply whose handler left the body unread, at most this many
    /// body bytes are read and dropped so the connection can serve the next
    /// request; a longer rest closes it. Default 256 KiB: reading a small
    /// rest costs less than a new connection; a large one is the client's
    /// upload the server does not want.
    pub drain_bytes: u64,
    /// Replies held for a client that does not read, past which no further
    /// pipelined request is read. Default 256 KiB.
    pub output_budget: usize,
    /// Most connections at once; further clients wait in the listen
    /// backlog. Default 1024.
    pub max_connections: usize,
    /// After a refusal the server stops writing and reads what the client
    /// still sends, for at most this long and [`Config::linger_bytes`], so
    /// that closing with unread bytes (a TCP reset) does not destroy the
    /// reply before the client reads it. Default 1 s.
    pub linger: Duration,
    /// The most bytes read and thrown away while lingering. Default 64 KiB.
    pub linger_bytes: usize,
    /// At shutdown, how long open connections get to finish the request in
    /// hand: a [`Handler`] still running may complete and its reply is
    /// written (with `Connection: close`). Past it every connection is
    /// dropped, running handlers with it. Default 5 s.
    pub shutdown_grace: Duration,
    /// The longest a [`Handler`] may take over one request: past it, its
    /// future is dropped and the client gets `503 Service Unavailable`, and
    /// the connection goes on (kept alive if the request asked for it).
    /// `503` rather than `504 Gateway Timeout`: this server is no gateway
    /// and cannot tell that an upstream failed (a handler may time out on
    /// its own work), and `503` is what a server says when it cannot answer
    /// now but might later (Go's `http.TimeoutHandler` says the same).
    /// Default `None`: handlers take as long as they take (a client that
    /// gave up is not noticed while one runs; see [`Handler`]).
    pub handler_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_response: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH,
            max_body: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH as u64,
            drain_bytes: 256 * 1024,
            output_budget: 256 * 1024,
            max_connections: 1024,
            linger: Duration::from_secs(1),
            linger_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
            handler_timeout: None,
        }
    }
}

impl Config {
    /// Sets [`Config::limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`Config::head_timeout`].
    pub fn head_timeout(mut self, limit: Duration) -> Self {
        self.head_timeout = limit;
        self
    }

    /// Sets [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// Sets [`Config::write_timeout`].
    pub fn write_timeout(mut self, limit: Duration) -> Self {
        self.write_timeout = limit;
        self
    }

    /// Sets [`Config::shutdown_grace`].
    pub fn shutdown_grace(mut self, limit: Duration) -> Self {
        self.shutdown_grace = limit;
        self
    }

    /// Sets [`Config::handler_timeout`] (`None`: no limit).
    pub fn handler_timeout(mut self, limit: Option<Duration>) -> Self {
        self.handler_timeout = limit;
        self
    }

    /// Sets [`Config::max_body`].
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets [`Config::drain_bytes`].
    pub fn drain_bytes(mut self, bytes: u64) -> Self {
        self.drain_bytes = bytes;
        self
    }

    /// Sets [`Config::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// An HTTP/1.1 server: keep-alive, pipelining, request bodies (streamed,
/// [`Body`]), limits on heads and bodies and deadlines, on enchufe's
/// connection driver. What it refuses is the rules table on
/// [`Refusal`](crate::Refusal).
///
/// ```no_run
/// use enchufe::http::{handler_fn, Request, Response, Server};
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let server = Server::bind("127.0.0.1:8080").await?;
/// let hello = handler_fn(|req: Request| async move {
///     Response::text(200, format!("hola, {}\n", req.path))
/// });
/// server.run(hello, std::future::pending()).await; // or a Ctrl-C future
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: Config,
    /// TLS on every connection accepted (`Server::tls`).
    #[cfg(feature = "tls")]
    tls: Option<enchufe_server::tls::Acceptor>,
}

impl Server {
    /// Binds a listener with the default [`Config`].
    ///
    /// # Errors
    /// The bind's.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr).await?,
            config: Config::default(),
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Serves HTTPS: every connection accepted runs the server's side of a
    /// TLS handshake first (within [`Config::head_timeout`], as a head), with the same
    /// acceptor (certificate options and loader) as the frame server's
    /// `Server::tls` (feature `tls`). A failed handshake is logged and
    /// closed; the handler never sees it.
    ///
    /// ```no_run
    /// # async fn f(cert: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// use enchufe::http::Server;
    /// let acceptor = enchufe::server::tls::Acceptor::from_pem_files(cert, key)?;
    /// let server = Server::bind("127.0.0.1:8443").await?.tls(acceptor);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, acceptor: enchufe_server::tls::Acceptor) -> Server {
        self.tls = Some(acceptor);
        self
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: Config) -> Server {
        self.config = config;
        self
    }

    /// The address it listens on (the port chosen, after binding port 0).
    ///
    /// # Errors
    /// The socket's.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each
    /// connection finish the request in hand (a running handler, its reply)
    /// within [`Config::shutdown_grace`], drops those still open after it,
    /// and returns once every connection's task has ended.
    ///
    /// The listener is the frame server's (`enchufe::Server` with this
    /// handler as its only door): one accept loop with its permit before
    /// `accept`, back-off, connection caps and shutdown for every protocol.
    pub async fn run<H: Handler>(self, handler: H, shutdown: impl Future<Output = ()>) {
        let listen = enchufe_server::Config::default()
            .max_connections(self.config.max_connections)
            .shutdown_grace(self.config.shutdown_grace)
            .handshake_timeout(self.config.head_timeout);
        let door = Door::new(handler).with_config(self.config);
        let server = enchufe_server::Server::from_listener(self.listener);
        #[cfg(feature = "tls")]
        let server = match self.tls {
            Some(acceptor) => server.tls(acceptor),
            None => server,
        };
        server
            .with_config(listen)
            .http_only(door)
            .run(no_frames(), shutdown)
            .await;
    }
}

/// The frame handler of an HTTP-only server: never called, since every
/// connection goes to the HTTP door.
fn no_frames() -> impl enchufe_server::Handler {
    enchufe_server::handler_fn(|_: bytes::Bytes, _conn| async {
        Ok::<Option<bytes::Bytes>, std::convert::Infallible>(None)
    })
}

/// HTTP/1.1 as a door of an enchufe server: the same port serves frames
/// and HTTP (and WebSocket, with `Server::web`), each connection told apart
/// by its first byte, all under the listener's limits.
///
/// ```
/// use enchufe::http::{door, handler_fn, Request, Response};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let web = door(handler_fn(|req: Request| async move {
///     Response::text(200, format!("hola, {}\n", req.path))
/// }));
/// let server = enchufe::Server::bind("127.0.0.1:0").await?.http(web);
/// let handle = server.serve(enchufe::handler_fn(|cmd: String, _conn| async move {
///     Ok::<_, std::convert::Infallible>(Some(cmd))
/// }));
/// // frames and HTTP at handle.local_addr()
/// # handle.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub fn door<H: Handler>(handler: H) -> Door<H> {
    Door::new(handler)
}

/// An HTTP handler with its [`Config`], served on an enchufe server's
/// listener ([`door`]; `Server::http`). Of the config, the listener's own
/// limits (`max_connections`, `shutdown_grace`) are the server's; the rest
/// (heads, deadlines, bodies, replies) apply per connection.
pub struct Door<H> {
    handler: Arc<H>,
    config: Arc<Config>,
}

impl<H> std::fmt::Debug for Door<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Door<H> {
    /// A door with the default [`Config`].
    pub fn new(handler: H) -> Door<H> {
        Door {
            handler: Arc::new(handler),
            config: Arc::new(Config::default()),
        }
    }

    /// Replaces the configuration.
    #[must_use]
    pub fn with_config(mut self, config: Config) -> Door<H> {
        self.config = Arc::new(config);
        self
    }
}

impl<H: Handler> enchufe_server::Door for Door<H> {
    fn serve(
        &self,
        io: enchufe_engine::net::BoxIo,
        _peer: SocketAddr,
        stop: CancellationToken,
    ) -> enchufe_engine::net::BoxFuture<'static, ()> {
        let (handler, config) = (self.handler.clone(), self.config.clone());
        Box::pin(async move { serve(io, &*handler, &config, &stop).await })
    }
}

/// One HTTP connection's driver: the engine's, with HTTP's role.
type Driver<'a, Io> = driver::Driver<Io, &'a Signal, RequestHead, HttpRole>;

/// What HTTP's loops get from the driver.
type Event = driver::Event<Cut>;

/// HTTP's [`Role`]: every event as it is, but the driver's failures as one
/// [`Cut`] (what the codec refused is read here, once).
#[derive(Debug)]
struct HttpRole;

/// Why an HTTP connection, or the request body it reads, cannot go on.
#[derive(Debug)]
enum Cut {
    /// Reading failed; with the status its codec refused the head or body
    /// with, if it did.
    Read {
        error: enchufe_framing::Error,
        refusal: Option<u16>,
    },
    /// A head began and did not end in time, or no first request came:
    /// `408`. (A body: it stopped arriving.)
    Late,
    /// No request for the idle timeout. (A body: it stopped arriving.)
    Idle,
    /// The output failed or stalled: nothing more can be sent.
    Output,
}

impl<Io> Role<Io, RequestHead> for HttpRole
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    type End = Cut;

    fn on_failure(
        &mut self,
        failure: Failure,
        out: &mut Output<'_, Io, RequestHead>,
    ) -> Option<Event> {
        Some(Event::End(match failure {
            Failure::ReadFailed(error) => Cut::Read {
                refusal: out.wire().split().refusal().map(Refusal::status),
                error,
            },
            Failure::FrameTimeout(_) | Failure::HelloTimeout(_) => Cut::Late,
            Failure::IdleTimeout => Cut::Idle,
            Failure::WriteFailed(_) | Failure::Stalled(_) => Cut::Output,
        }))
    }
}

/// How a connection ends.
enum End {
    /// Close after flushing what is queued.
    Close,
    /// Reply with this status (a refusal), then close.
    Refuse(u16),
}

/// What a handler's run came to.
enum Outcome {
    /// Its reply.
    Reply(Response),
    /// It panicked: `500`, and the connection closes.
    Panicked,
    /// [`Config::handler_timeout`] passed: `503`.
    TimedOut,
    /// The connection cannot go on (its output failed or stalled): nothing
    /// can be sent any more.
    Ended,
}

/// One connection: the driver reads heads through [`RequestHead`], the
/// handler answers (one request at a time, so replies keep request order),
/// the driver writes and flushes. Generic over the I/O for the tests.
async fn serve<Io, H>(stream: Io, handler: &H, config: &Config, stop: &CancellationToken)
where
    Io: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let signal = Signal::default();
    let framing = enchufe_framing::Config::default().max_frame_length(config.max_response);
    let wire = Wire::with_split(stream, &framing, RequestHead::new(config.limits));
    let deadlines = Deadlines {
        idle: Some(config.idle_timeout),
        write_timeout: Some(config.write_timeout),
        frame: Some(config.head_timeout),
        // The first request's head must begin and end within the head
        // timeout: a connection that sends nothing holds a socket and a
        // permit, and is refused (408) as a trickled head is.
        hello: Some(config.head_timeout),
        ..Deadlines::default()
    };
    let mut driver = Driver::with_role(wire, &signal, config.output_budget, deadlines, HttpRole);
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    // Body bytes still allowed to be read and dropped, while the rest of a
    // body the handler left unread is skipped.
    let mut draining: Option<u64> = None;
    let end = loop {
        let event = tokio::select! {
            biased;
            () = &mut stopped => break End::Close,
            event = driver.event(true) => event,
        };
        match event {
            Event::Frame(rest) if draining.is_some() => {
                if !driver.wire().split().in_body() {
                    draining = None;
                    continue;
                }
                match draining.and_then(|left| left.checked_sub(rest.len() as u64)) {
                    Some(left) => draining = Some(left),
                    None => break End::Close,
                }
            }
            Event::Frame(head) => {
                driver.hello_done();
                match answer(&head, handler, &mut driver, config, stop).await {
                    Ok(After::KeepAlive) => {}
                    Ok(After::Drain) => draining = Some(config.drain_bytes),
                    Ok(After::Close) => break End::Close,
                    Err(status) => break End::Refuse(status),
                }
            }
            // A broken rest of a body already answered: no second reply.
            Event::End(Cut::Read { .. }) if draining.is_some() => break End::Close,
            Event::End(Cut::Read { error, refusal }) => match refusal {
                Some(status) => {
                    tracing::debug!(%error, "request head refused");
                    break End::Refuse(status);
                }
                None => {
                    tracing::debug!(%error, "connection read failed");
                    break End::Close;
                }
            },
            Event::End(Cut::Late) => break End::Refuse(408),
            Event::Eof | Event::End(Cut::Idle | Cut::Output) => break End::Close,
            // No streams, role bits or queue here; our one deadline (the
            // handler's) is cleared before we read again.
            _ => {}
        }
    };
    if let End::Refuse(status) = end {
        let reply = Response::text(status, format!("{status}\n"));
        let _ = driver.write(&OutFrame::plain(reply.encode(1, false, false)));
    }
    let _ = driver.finish_writing().await;
    if matches!(end, End::Refuse(_)) {
        linger(driver.wire_mut().get_mut(), config).await;
    }
}

/// What follows a reply.
enum After {
    /// The next request.
    KeepAlive,
    /// The rest of the body the handler left unread, then the next request.
    Drain,
    /// Nothing: close after flushing.
    Close,
}

/// The connection's side of a request body while the handler runs: reads
/// body messages from the wire (only when the handler asked for the body
/// and its channel has room) and passes them on.
struct Pump {
    /// `None` once the body ended, failed, or the handler dropped it.
    tx: Option<BodySender>,
    /// `Expect: 100-continue` on HTTP/1.1: nothing is read before the
    /// handler asks, and then `100 Continue` goes first.
    expect: bool,
    /// The body's end message was taken: the next request starts clean.
    ended: bool,
    /// The body broke (its refusal's status): refuse and close.
    failed: Option<u16>,
    /// The connection cannot go on after this reply (EOF, a stall).
    cut: bool,
}

impl Pump {
    /// Whether to read body bytes now; writes `100 Continue` the first time
    /// an expecting handler asks.
    fn read<Io>(&mut self, driver: &mut Driver<'_, Io>) -> bool
    where
        Io: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(tx) = &self.tx else { return false };
        if !tx.wanted() && (self.expect || tx.tx.capacity() == 0) {
            return false;
        }
        if self.expect {
            self.expect = false;
            let _ = driver.write(&OutFrame::plain(bytes::Bytes::from_static(
                b"HTTP/1.1 100 Continue\r\n\r\n",
            )));
        }
        tx.tx.capacity() > 0
    }

    /// A body message from the wire: bytes, or (empty) the end.
    fn deliver(&mut self, message: bytes::BytesMut) {
        if message.is_empty() {
            self.ended = true;
        }
        if let Some(tx) = &self.tx {
            // Room was checked before reading; a handler that dropped its
            // body closed the channel: the rest is drained or the
            // connection closed after the reply.
            if tx.tx.try_send(Ok(message.freeze())).is_err() || self.ended {
                self.tx = None;
            }
        }
    }

    /// An event of the driver while the body may be read: body bytes are
    /// passed on (`true`: the handler has something to read), a read that
    /// failed, ended or stalled fails the body.
    fn event(&mut self, event: Event) -> bool {
        match event {
            Event::Frame(message) => {
                self.deliver(message);
                return true;
            }
            Event::End(Cut::Read { error, refusal }) => {
                self.failed = refusal;
                self.fail(error);
            }
            Event::Eof => self.fail(enchufe_framing::Error::UnexpectedEof {
                expected: 0,
                received: 0,
            }),
            Event::End(Cut::Idle | Cut::Late) => self.fail(enchufe_framing::Error::Malformed(
                enchufe_framing::Malformed::HttpBodyStopped,
            )),
            _ => {}
        }
        false
    }

    /// The body cannot be read on: `error` to the handler.
    fn fail(&mut self, error: enchufe_framing::Error) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.tx.try_send(Err(error));
        }
        self.cut = true;
    }
}

/// Answers one request: what follows it, or `Err(status)` to refuse and
/// close.
async fn answer<Io, H>(
    head: &[u8],
    handler: &H,
    driver: &mut Driver<'_, Io>,
    config: &Config,
    stop: &CancellationToken,
) -> Result<After, u16>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let (mut request, framing) = Request::parse_framed(head).map_err(|refusal| {
        tracing::debug!(?refusal, "request refused");
        refusal.status()
    })?;
    let len = match framing {
        Framing::Length(0) => None,
        Framing::Length(n) if n > config.max_body => return Err(Refusal::BodyTooLarge.status()),
        Framing::Length(n) => Some(Some(n)),
        Framing::Chunked => Some(None),
    };
    let mut pump = len.map(|len| {
        driver
            .wire_mut()
            .split_mut()
            .start_body(len, config.max_body);
        let (tx, body) = Body::channel(len);
        request.body = body;
        Pump {
            tx: Some(tx),
            // RFC 9110 §10.1.1: ignored on HTTP/1.0.
            expect: request.version >= 1 && request.header("expect").is_some(),
            ended: false,
            failed: None,
            cut: false,
        }
    });
    // The handler takes the request: what the reply's framing needs is
    // kept aside.
    let (version, head_only) = (request.version, request.method == "HEAD");
    let asked_keep_alive = request.keep_alive();
    let outcome = run_handler(handler, request, driver, pump.as_mut(), config).await;
    if let Some(status) = pump.as_ref().and_then(|p| p.failed) {
        return Err(status);
    }
    let mut reply = match outcome {
        Outcome::Reply(reply) => reply,
        Outcome::TimedOut => Response::text(503, "503: the handler took too long\n"),
        Outcome::Panicked => return Err(500),
        Outcome::Ended => return Ok(After::Close),
    };
    // Shutdown began while the handler ran: this reply is the last, and
    // says so. HTTP/1.0 has no chunked: a streamed body of unknown length
    // ends with the connection.
    let open = asked_keep_alive
        && !stop.is_cancelled()
        && (version >= 1 || reply.stream.as_ref().is_none_or(|s| s.len.is_some()));
    let stream = reply.stream.as_ref().filter(|_| !head_only).is_some();
    // A streamed reply may read the body while it is written: what follows
    // is known after it.
    let after = if stream {
        open_after(open)
    } else {
        after_body(open_after(open), pump.as_ref(), driver, config)
    };
    let keep_alive = !matches!(after, After::Close);
    let head = reply.encode(version, keep_alive, head_only);
    let Some(chunks) = reply.stream.take().filter(|_| !head_only) else {
        if driver.write(&OutFrame::plain(head)).is_err() {
            tracing::warn!(status = reply.status, "reply over max_response");
            return Err(500);
        }
        return Ok(after);
    };
    let chunked = chunks.len.is_none() && version >= 1;
    match send_stream(driver, pump.as_mut(), head, chunks, chunked, config).await {
        Ok(()) => Ok(after_body(after, pump.as_ref(), driver, config)),
        Err(Streaming::BeforeHead) => Err(500),
        Err(Streaming::Cut) => Ok(After::Close),
    }
}

/// What follows a reply before looking at the body.
fn open_after(open: bool) -> After {
    if open {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// What follows a reply given the request body's state: a body the handler
/// left unread is drained after it, unless its client waits for `100
/// Continue` (it may never send it), the connection broke, or a declared
/// rest is over [`Config::drain_bytes`] (known now, so the reply says the
/// connection closes; a chunked rest is measured as it comes).
fn after_body<Io>(
    after: After,
    pump: Option<&Pump>,
    driver: &Driver<'_, Io>,
    config: &Config,
) -> After
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let Some(pump) = pump else { return after };
    if pump.cut || pump.expect {
        return After::Close;
    }
    if pump.ended || !matches!(after, After::KeepAlive) {
        return after;
    }
    let left = driver.wire().split().body_left();
    if left.is_some_and(|left| left > config.drain_bytes) {
        After::Close
    } else {
        After::Drain
    }
}

/// How a streamed reply failed.
enum Streaming {
    /// Before its head was written: a `500` can still be sent.
    BeforeHead,
    /// After: the connection closes, the client sees the reply cut short.
    Cut,
}

/// Writes a streamed reply: the head once the first chunk (or the end)
/// arrives, so that a `100 Continue` its reading of the request body
/// causes goes first; then each chunk (framed when `chunked`), only while
/// the output holds less than [`Config::output_budget`]. The request body's
/// pump runs meanwhile, so a reply may stream the request back.
async fn send_stream<Io>(
    driver: &mut Driver<'_, Io>,
    mut pump: Option<&mut Pump>,
    head: bytes::Bytes,
    streamed: Streamed,
    chunked: bool,
    config: &Config,
) -> Result<(), Streaming>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let Streamed { len, mut chunks } = streamed;
    let mut head = Some(head);
    let mut sent: u64 = 0;
    let result = std::future::poll_fn(|cx| loop {
        let room = driver.queued() < config.output_budget;
        if room {
            match chunks.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(head) = head.take() {
                        driver.write_chunk(&head);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    sent += chunk.len() as u64;
                    if len.is_some_and(|len| sent > len) {
                        tracing::warn!(?len, "streamed reply longer than its length");
                        return Poll::Ready(Err(Streaming::Cut));
                    }
                    if chunked {
                        let size = format!("{:x}\r\n", chunk.len());
                        driver.write_chunk(&bytes::Bytes::from(size));
                        driver.write_chunk(&chunk);
                        driver.write_chunk(&bytes::Bytes::from_static(b"\r\n"));
                    } else {
                        driver.write_chunk(&chunk);
                    }
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "streamed reply failed");
                    return Poll::Ready(Err(match head {
                        Some(_) => Streaming::BeforeHead,
                        None => Streaming::Cut,
                    }));
                }
                Poll::Ready(None) => {
                    if let Some(head) = head.take() {
                        driver.write_chunk(&head);
                    }
                    if len.is_some_and(|len| sent != len) {
                        tracing::warn!(?len, sent, "streamed reply shorter than its length");
                        return Poll::Ready(Err(Streaming::Cut));
                    }
                    if chunked {
                        driver.write_chunk(&bytes::Bytes::from_static(b"0\r\n\r\n"));
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {}
            }
        }
        let read = pump.as_deref_mut().is_some_and(|p| p.read(driver));
        driver.set_busy(!read);
        match driver.poll_event(cx, read) {
            Poll::Ready(Event::End(Cut::Output)) => return Poll::Ready(Err(Streaming::Cut)),
            Poll::Ready(event) => {
                if let Some(pump) = pump.as_deref_mut() {
                    pump.event(event);
                }
            }
            // Room again after a flush: the stream is polled once more.
            Poll::Pending if !room && driver.queued() < config.output_budget => {}
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    driver.set_busy(false);
    result
}

/// Runs the handler on this task while the driver keeps the connection:
/// earlier replies are flushed, the write deadline is kept, the idle
/// timeout waits (the driver is busy) unless the handler waits for its
/// body, and nothing is read but that body (pipelined heads stay in the
/// wire's bounded buffer until their turn). The handler's deadline is the
/// driver's own ([`Driver::set_deadline`]), on the connection's one timer,
/// so a run without a timeout arms nothing.
async fn run_handler<Io, H>(
    handler: &H,
    request: Request,
    driver: &mut Driver<'_, Io>,
    mut pump: Option<&mut Pump>,
    config: &Config,
) -> Outcome
where
    Io: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let timeout = config.handler_timeout;
    // A closure may panic before it returns its future, or the future when
    // polled: both answer `500`. Unwind safety: on a panic the future is
    // dropped and the connection closed, so no state it left half-changed
    // is used again by this connection.
    let call = match catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
        Ok(call) => call,
        Err(panic) => {
            tracing::warn!(panic = panic_message(&*panic), "HTTP handler panicked");
            return Outcome::Panicked;
        }
    };
    let mut call = pin!(call);
    if let Some(limit) = timeout {
        driver.set_deadline(Some(Instant::now() + limit));
    }
    driver.set_busy(true);
    let outcome = std::future::poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
            Ok(Poll::Ready(reply)) => return Poll::Ready(Outcome::Reply(reply)),
            Ok(Poll::Pending) => {}
            Err(panic) => {
                tracing::warn!(panic = panic_message(&*panic), "HTTP handler panicked");
                return Poll::Ready(Outcome::Panicked);
            }
        }
        loop {
            // The body is read only while the handler wants it; a body that
            // stops arriving meanwhile is bounded by the idle timeout.
            let read = pump.as_deref_mut().is_some_and(|p| p.read(driver));
            driver.set_busy(!read);
            match driver.poll_event(cx, read) {
                Poll::Ready(Event::Deadline) => {
                    tracing::warn!(limit = ?timeout.unwrap_or_default(), "HTTP handler timed out");
                    return Poll::Ready(Outcome::TimedOut);
                }
                Poll::Ready(Event::End(Cut::Output)) => return Poll::Ready(Outcome::Ended),
                Poll::Ready(event) => {
                    let Some(pump) = pump.as_deref_mut() else {
                        // Nothing else can come while not reading (no
                        // signal bits are used).
                        continue;
                    };
                    if pump.event(event) {
                        // The handler may read it now.
                        return match catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
                            Ok(Poll::Ready(reply)) => Poll::Ready(Outcome::Reply(reply)),
                            Ok(Poll::Pending) => continue,
                            Err(panic) => {
                                tracing::warn!(
                                    panic = panic_message(&*panic),
                                    "HTTP handler panicked"
                                );
                                Poll::Ready(Outcome::Panicked)
                            }
                        };
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    driver.set_busy(false);
    driver.set_deadline(None);
    outcome
}

/// A panic's message, when it is a string.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

/// Reads and drops what the client still sends after a refusal, bounded
/// in time and bytes (see [`Config::linger`]).
async fn linger(io: &mut (impl AsyncRead + Unpin), config: &Config) {
    let mut left = config.linger_bytes;
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(config.linger, async {
        while left > 0 {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::handler_fn;

    /// An I/O that counts the writes made to it.
    struct Counting {
        inner: tokio::io::DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Sixteen pipelined requests that arrive in one read are answered in
    /// order with one write, not one per reply.
    #[tokio::test]
    async fn pipelined_replies_leave_in_order_in_one_write() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let io = Counting {
            inner: ours,
            writes: writes.clone(),
        };
        let handler =
            handler_fn(|request: Request| async move { Response::text(200, request.path) });
        let config = Config::default();
        let server = tokio::spawn(async move {
            serve(io, &handler, &config, &CancellationToken::new()).await;
        });
        let mut requests = String::new();
        for i in 0..16 {
            requests.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n"));
        }
        theirs.write_all(requests.as_bytes()).await.unwrap();
        let mut replies = vec![0u8; 0];
        let mut buf = [0u8; 1 << 16];
        while replies.windows(4).filter(|w| w == b"\r\n\r\n").count() < 16
            || !replies.ends_with(b"/15")
        {
            let n = theirs.read(&mut buf).await.unwrap();
            assert!(n > 0);
            replies.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(replies).unwrap();
        let order: Vec<usize> = (0..16)
            .map(|i| text.find(&format!("\r\n\r\n/{i}")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 1);
        drop(theirs);
        server.await.unwrap();
    }

    /// While a handler runs, the connection reads nothing more: what the
    /// client can push is the pipe's capacity plus at most the head limit
    /// and a read or two, not whatever it sends. (Paused time: the client's
    /// write is known to be stuck when the runtime has nothing else to do.)
    #[tokio::test(start_paused = true)]
    async fn a_running_handler_leaves_further_input_unread() {
        const PIPE: usize = 4096;
        let (ours, mut theirs) = tokio::io::duplex(PIPE);
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let opened = gate.clone();
        let handler = handler_fn(move |_: Request| {
            let gate = opened.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Response::text(200, "ok\n")
            }
        });
        let config = Config::default().limits(Limits::default().max_head(1024));
        let server = tokio::spawn(async move {
            serve(ours, &handler, &config, &CancellationToken::new()).await;
        });
        theirs
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nX: ")
            .await
            .unwrap();
        let mut sent = 0;
        while sent < 1 << 20 {
            match tokio::time::timeout(Duration::from_secs(1), theirs.write(&[b'a'; 512])).await {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
        assert!(sent <= PIPE + 1024 + 16 * 1024, "{sent} bytes taken");
        // Once it answers, reading resumes: the long head is refused.
        gate.add_permits(1);
        let mut reply = Vec::new();
        theirs.read_to_end(&mut reply).await.unwrap();
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("HTTP/1.1 431 "), "{reply}");
        server.await.unwrap();
    }
}
