//! [`Server`]: HTTP/1.1 over the same connection [`Driver`] as every enchufe
//! role, with [`RequestHead`] as the wire's codec instead of the length
//! prefix.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enchufe_framing::driver::{Deadlines, Driver, Event};
use enchufe_framing::{OutFrame, Signal, Wire};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Limits, Refusal, Request, RequestHead, Response};

/// What answers requests: the course's `handle_command`, for HTTP. It runs
/// on the connection's task, between reading a head and writing the reply,
/// so keep it quick (it holds that connection, and a runtime worker).
///
/// Any `Fn(&Request) -> Response + Send + Sync + 'static` is one.
pub trait Handler: Send + Sync + 'static {
    /// The reply to `request`.
    fn handle(&self, request: &Request) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, request: &Request) -> Response {
        self(request)
    }
}

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
    /// At shutdown, how long open connections get to finish their reply.
    /// Default 5 s.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_response: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH,
            output_budget: 256 * 1024,
            max_connections: 1024,
            linger: Duration::from_secs(1),
            linger_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
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

    /// Sets [`Config::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// An HTTP/1.1 server for `GET` and `HEAD`: keep-alive, pipelining,
/// limits on heads and deadlines, on enchufe's connection driver.
///
/// Requests with a body (`Content-Length` over 0, or any
/// `Transfer-Encoding`) are answered `413` / `501` and the connection is
/// closed: this server reads heads only, and a body left unread would be
/// taken for the next head.
///
/// ```no_run
/// use enchufe_http::{Request, Response, Server};
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let server = Server::bind("127.0.0.1:8080").await?;
/// let hello = |req: &Request| Response::text(200, format!("hola, {}\n", req.path));
/// server.run(hello, std::future::pending()).await; // or a Ctrl-C future
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    config: Config,
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
        })
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
    /// connection finish the reply it is writing (within
    /// [`Config::shutdown_grace`]) and returns.
    pub async fn run<H: Handler>(self, handler: H, shutdown: impl Future<Output = ()>) {
        let handler = Arc::new(handler);
        let config = Arc::new(self.config);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            // The permit first: at the limit, clients wait in the backlog.
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, a reset before accept: back
                        // off rather than spin or exit.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (handler, config, stop) = (handler.clone(), config.clone(), stop.clone());
            tracker.spawn(async move {
                serve(stream, &*handler, &config, &stop).await;
                drop(permit);
            });
        }
        stop.cancel();
        tracker.close();
        if tokio::time::timeout(config.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = tracker.len(),
                "connections still open after the grace period"
            );
        }
    }
}

/// How a connection ends.
enum End {
    /// Close after flushing what is queued.
    Close,
    /// Reply with this status (a refusal), then close.
    Refuse(u16),
}

/// One connection: the driver reads heads through [`RequestHead`], the
/// handler answers, the driver writes and flushes the batch.
async fn serve<H: Handler>(
    stream: TcpStream,
    handler: &H,
    config: &Config,
    stop: &CancellationToken,
) {
    let signal = Signal::default();
    let framing = enchufe_framing::Config::default().max_frame_length(config.max_response);
    let wire = Wire::with_split(stream, &framing, RequestHead::new(config.limits));
    let deadlines = Deadlines {
        idle: Some(config.idle_timeout),
        write_timeout: Some(config.write_timeout),
        frame: Some(config.head_timeout),
        ..Deadlines::default()
    };
    let mut driver = Driver::new(wire, &signal, config.output_budget, deadlines);
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let end = loop {
        let event = tokio::select! {
            biased;
            () = &mut stopped => break End::Close,
            event = driver.event(true) => event,
        };
        match event {
            Event::Frame(head) => match answer(&head, handler, &mut driver) {
                Ok(true) => {}
                Ok(false) => break End::Close,
                Err(status) => break End::Refuse(status),
            },
            Event::ReadFailed(e) => match driver.wire().split().refusal() {
                Some(refusal) => {
                    tracing::debug!(error = %e, "request head refused");
                    break End::Refuse(refusal.status());
                }
                None => {
                    tracing::debug!(error = %e, "connection read failed");
                    break End::Close;
                }
            },
            Event::FrameTimeout(_) | Event::HelloTimeout(_) => break End::Refuse(408),
            Event::Eof | Event::IdleTimeout | Event::WriteFailed(_) | Event::Stalled(_) => {
                break End::Close
            }
            // No streams, role bits, queue or deadline of our own here.
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

/// Answers one head: `Ok(keep_alive)`, or `Err(status)` to refuse and close.
fn answer<Io, H>(
    head: &[u8],
    handler: &H,
    driver: &mut Driver<Io, &Signal, RequestHead>,
) -> Result<bool, u16>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let request = Request::parse(head).map_err(Refusal::status)?;
    if request.version >= 1 && request.header("host").is_none() {
        return Err(400);
    }
    if request.header("transfer-encoding").is_some() {
        return Err(501);
    }
    match request.header("content-length").map(str::parse::<u64>) {
        None | Some(Ok(0)) => {}
        Some(Ok(_)) => return Err(413),
        Some(Err(_)) => return Err(400),
    }
    let keep_alive = request.keep_alive();
    let reply = handler.handle(&request);
    let bytes = reply.encode(request.version, keep_alive, request.method == "HEAD");
    if driver.write(&OutFrame::plain(bytes)).is_err() {
        tracing::warn!(status = reply.status, "reply over max_response");
        return Err(500);
    }
    Ok(keep_alive)
}

/// Reads and drops what the client still sends after a refusal, bounded
/// in time and bytes (see [`Config::linger`]).
async fn linger(io: &mut TcpStream, config: &Config) {
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
