//! The datagram server: [`UdpServer`], its [`UdpServerHandle`], [`Config`]
//! and [`Stats`].

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use enchufe_framing::Decode;
use futures::FutureExt;
use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::datagram::{self, worth_logging, MAX_DATAGRAM};
use crate::error::is_unreachable;
use crate::{Context, Error, Handler, Result};

/// How a [`UdpServer`] receives and limits.
///
/// ```
/// use std::time::Duration;
/// use enchufe::udp::server::Config;
/// let config = Config::default().max_datagram(1200).max_in_flight(64);
/// assert_eq!((config.max_datagram, config.max_in_flight), (1200, 64));
/// assert_eq!(config.shutdown_grace, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest datagram received or replied, in bytes. Default
    /// [`MAX_DATAGRAM`] (65,507, the most UDP carries over IPv4); values
    /// over 65,527 act as 65,527. A longer datagram is dropped whole and
    /// counted in [`Stats::too_large`], never handed on cut short; a reply
    /// over it is not sent ([`Stats::reply_failures`]).
    pub max_datagram: usize,

    /// Handlers running at once. Default 256. Past it, datagrams are
    /// dropped on arrival and counted in [`Stats::busy_drops`]: UDP has no
    /// way to slow a sender down, and waiting would only let the kernel's
    /// receive buffer overflow, dropping datagrams where nobody counts them.
    /// Each one in flight holds its datagram, so memory for requests is at
    /// most `max_in_flight × max_datagram` (16 MiB with the defaults) plus
    /// what the handlers allocate.
    pub max_in_flight: usize,

    /// How long [`UdpServerHandle::shutdown`] lets running handlers finish
    /// (and send their replies) before they are dropped. Default 5 s, as
    /// the TCP server's.
    pub shutdown_grace: Duration,

    /// The socket's receive buffer (`SO_RCVBUF`), in bytes; `None` (the
    /// default) keeps the system's (208 KiB on most Linux systems). Bursts
    /// that arrive faster than the server reads wait here; past it the
    /// kernel drops them, uncounted by [`Stats`]. Linux caps the size at
    /// `net.core.rmem_max`; [`UdpServer::buffer_sizes`] tells what was
    /// granted.
    pub recv_buffer: Option<usize>,

    /// The socket's send buffer (`SO_SNDBUF`), in bytes; `None` (the
    /// default) keeps the system's. Capped at `net.core.wmem_max`.
    pub send_buffer: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_datagram: MAX_DATAGRAM,
            max_in_flight: 256,
            shutdown_grace: Duration::from_secs(5),
            recv_buffer: None,
            send_buffer: None,
        }
    }
}

impl Config {
    enchufe_framing::setters! {
        max_datagram: usize;
        max_in_flight: usize;
        shutdown_grace: Duration;
        recv_buffer: usize => Some;
        send_buffer: usize => Some;
    }
}

/// Counters of a server's life so far, from [`UdpServerHandle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams received, whatever became of them.
    pub received: u64,
    /// Replies sent.
    pub replies: u64,
    /// Datagrams over [`Config::max_datagram`], dropped.
    pub too_large: u64,
    /// Datagrams dropped because [`Config::max_in_flight`] handlers were
    /// already running.
    pub busy_drops: u64,
    /// Datagrams that did not decode as the handler's request type, dropped.
    pub undecodable: u64,
    /// Handler calls that returned an error or panicked.
    pub handler_failures: u64,
    /// Replies not sent: they did not encode, were over the limit, or the
    /// socket refused them.
    pub reply_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    replies: AtomicU64,
    too_large: AtomicU64,
    busy_drops: AtomicU64,
    undecodable: AtomicU64,
    handler_failures: AtomicU64,
    reply_failures: AtomicU64,
}

/// Adds one to `counter` and returns the new count.
fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            received: get(&self.received),
            replies: get(&self.replies),
            too_large: get(&self.too_large),
            busy_drops: get(&self.busy_drops),
            undecodable: get(&self.undecodable),
            handler_failures: get(&self.handler_failures),
            reply_failures: get(&self.reply_failures),
        }
    }
}

/// A bound UDP socket, ready to serve a [`Handler`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use enchufe::udp::{handler_fn, UdpClient, UdpServer};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = UdpServer::bind("127.0.0.1:0").await?.serve(handler_fn(|req: String, _ctx| async move {
///     Ok::<_, Infallible>(Some(format!("echo:{req}")))
/// }));
///
/// let client = UdpClient::connect(server.local_addr()).await?;
/// let reply: String = client.request("hola").await?;
/// assert_eq!(reply, "echo:hola");
///
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct UdpServer {
    socket: UdpSocket,
    config: Config,
}

impl UdpServer {
    /// Binds a UDP socket (IPv4 or IPv6; port 0 picks a free port).
    ///
    /// # Errors
    /// [`Error::Bind`] when no address could be bound.
    pub async fn bind(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<UdpServer> {
        let shown = addr.to_string();
        let socket = UdpSocket::bind(addr).await.map_err(|source| Error::Bind {
            addr: shown,
            source,
        })?;
        Ok(Self::from_socket(socket))
    }

    /// Serves on a socket bound elsewhere (with options set by hand, say).
    pub fn from_socket(socket: UdpSocket) -> UdpServer {
        UdpServer {
            socket,
            config: Config::default(),
        }
    }

    /// Replaces the configuration, and sets the socket's buffer sizes
    /// ([`Config::recv_buffer`], [`Config::send_buffer`]) at once, so that
    /// datagrams arriving before [`serve`](Self::serve) wait in them too.
    /// The kernel may grant less than asked without an error (Linux caps
    /// at `net.core.rmem_max`); [`buffer_sizes`](Self::buffer_sizes)
    /// reads back what it granted.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket refuses a buffer size.
    pub fn with_config(mut self, config: Config) -> Result<UdpServer> {
        datagram::set_buffers(&self.socket, config.recv_buffer, config.send_buffer)?;
        self.config = config;
        Ok(self)
    }

    /// The socket's receive and send buffer sizes as the kernel reports
    /// them, in bytes (Linux reports twice what was set: half is its
    /// bookkeeping).
    ///
    /// # Errors
    /// [`Error::Io`] if the OS cannot tell.
    pub fn buffer_sizes(&self) -> Result<(usize, usize)> {
        Ok(datagram::buffer_sizes(&self.socket)?)
    }

    /// The address the socket is bound to (with the real port when 0 was
    /// asked).
    ///
    /// # Errors
    /// [`Error::Io`] if the OS cannot tell.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    /// Starts serving in the background and returns a handle to the running
    /// server. Must be called within a Tokio runtime.
    pub fn serve<H: Handler>(self, handler: H) -> UdpServerHandle {
        let local_addr = self
            .socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let shared = Arc::new(Shared {
            local_addr,
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace: self.config.shutdown_grace,
            counters: Counters::default(),
        });
        let recv = Receiver {
            socket: Arc::new(self.socket),
            handler: Arc::new(handler),
            limit: datagram::effective(self.config.max_datagram),
            permits: Arc::new(Semaphore::new(self.config.max_in_flight)),
            shared: shared.clone(),
        };
        shared.tracker.spawn(
            recv.run()
                .instrument(info_span!("udp server", addr = %local_addr)),
        );
        UdpServerHandle { shared }
    }

    /// Serves until `signal` completes (for example
    /// `tokio::signal::ctrl_c()`; its output is ignored), then shuts down
    /// gracefully.
    pub async fn run<H: Handler, T>(self, handler: H, signal: impl Future<Output = T>) {
        let handle = self.serve(handler);
        let _ = signal.await;
        handle.shutdown().await;
    }
}

/// A running server: its address, counters and shutdown. Cheap to clone.
///
/// Dropping every handle does not stop the server; [`shutdown`](Self::shutdown) does.
#[derive(Debug, Clone)]
pub struct UdpServerHandle {
    shared: Arc<Shared>,
}

impl UdpServerHandle {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Stops receiving, lets running handlers finish and send their replies
    /// within [`Config::shutdown_grace`], then drops what is left. Returns
    /// once every task has ended and the socket is closed. Safe to call more
    /// than once, from several tasks.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.stop.cancel();
        shared.tracker.close();
        if tokio::time::timeout(shared.grace, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(grace = ?shared.grace, "udp handlers still running after the grace period; dropping them");
            shared.abort.cancel();
            shared.tracker.wait().await;
        }
    }

    /// Completes once the server has shut down.
    pub async fn stopped(&self) {
        self.shared.tracker.wait().await;
    }
}

/// State shared by the receive loop, the handler tasks and every handle.
#[derive(Debug)]
struct Shared {
    local_addr: SocketAddr,
    /// Stops the receive loop: the first step of shutdown.
    stop: CancellationToken,
    /// Ends handlers still running when the grace period is over.
    abort: CancellationToken,
    /// The receive loop and every handler task, so shutdown can wait for them.
    tracker: TaskTracker,
    grace: Duration,
    counters: Counters,
}

/// The receive loop: one task that reads every datagram and runs its
/// handler: polled once inline, and moved to a task of its own only if it
/// has to wait.
struct Receiver<H> {
    /// Shared with the handler tasks, which send replies on it; closed when
    /// the last of them ends.
    socket: Arc<UdpSocket>,
    handler: Arc<H>,
    limit: usize,
    /// One per running handler ([`Config::max_in_flight`]).
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
}

/// Longest pause after a receive error that is not about a datagram (out of
/// buffers, say): short enough to recover fast, long enough not to spin.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl<H: Handler> Receiver<H> {
    async fn run(self) {
        info!("serving");
        let mut buf = datagram::buffer(self.limit);
        let mut backoff = Duration::from_millis(5);
        loop {
            let received = tokio::select! {
                biased;
                () = self.shared.stop.cancelled() => break,
                received = self.socket.recv_buf_from(&mut buf) => received,
            };
            let from = match received {
                Ok((_, from)) => from,
                // An ICMP "port unreachable" for an earlier reply (the
                // course's WinError 10054 on Windows): about that client,
                // not about this socket.
                Err(e) if is_unreachable(&e) => continue,
                Err(e) => {
                    warn!(error = %e, ?backoff, "receive failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shared.stop.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(ERROR_BACKOFF_MAX);
                    continue;
                }
            };
            backoff = Duration::from_millis(5);
            self.dispatch(&mut buf, from);
        }
        info!("stopped receiving");
    }

    /// Hands the datagram in `buf` to a handler task, or drops and counts it.
    fn dispatch(&self, buf: &mut BytesMut, from: SocketAddr) {
        let counters = &self.shared.counters;
        bump(&counters.received);
        let payload = match datagram::take(buf, self.limit) {
            Ok(payload) => payload,
            Err(_) => {
                let n = bump(&counters.too_large);
                if worth_logging(n) {
                    warn!(%from, limit = self.limit, dropped = n, "datagram over the limit; dropped");
                }
                return;
            }
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let n = bump(&counters.busy_drops);
            if worth_logging(n) {
                warn!(%from, dropped = n, "every handler slot is busy; datagram dropped");
            }
            return;
        };
        let ctx = Context {
            peer_addr: from,
            local_addr: self.shared.local_addr,
            len: payload.len(),
        };
        let job = Job {
            socket: self.socket.clone(),
            handler: self.handler.clone(),
            shared: self.shared.clone(),
            limit: self.limit,
            _permit: permit,
        };
        // The first poll here, in the receive loop: a handler that answers
        // at once (an echo, a lookup) is done, reply sent, without a task
        // of its own, its wakeup and its abort registration, which cost
        // more than the datagram's own syscalls (see BENCHMARKS.md, UDP).
        // Only a handler that waits gets a task, polled again there with a
        // real waker (futures register the waker of their latest poll).
        let mut run = Box::pin(job.run(payload, ctx));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if run.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        let abort = self.shared.abort.clone();
        self.shared.tracker.spawn(async move {
            tokio::select! {
                () = abort.cancelled() => {}
                () = run => {}
            }
        });
    }
}

/// One datagram's handling: decode, handler, reply.
struct Job<H> {
    socket: Arc<UdpSocket>,
    handler: Arc<H>,
    shared: Arc<Shared>,
    limit: usize,
    /// Released when the job ends, making room for another.
    _permit: OwnedSemaphorePermit,
}

impl<H: Handler> Job<H> {
    async fn run(self, payload: BytesMut, ctx: Context) {
        let counters = &self.shared.counters;
        let from = ctx.peer_addr;
        let request = match H::Request::decode(payload) {
            Ok(request) => request,
            Err(e) => {
                let n = bump(&counters.undecodable);
                if worth_logging(n) {
                    warn!(%from, error = %e, dropped = n, "datagram does not decode; dropped");
                }
                return;
            }
        };
        let call = AssertUnwindSafe(self.handler.handle(request, &ctx)).catch_unwind();
        let reply = match call.await {
            Ok(Ok(Some(reply))) => reply,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                bump(&counters.handler_failures);
                warn!(%from, error = %e, "handler failed; no reply");
                return;
            }
            Err(panic) => {
                bump(&counters.handler_failures);
                let what = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("non-string payload");
                warn!(%from, panic = what, "handler panicked; no reply");
                return;
            }
        };
        let sent = match datagram::encode(reply, self.limit) {
            Ok(bytes) => self.socket.send_to(&bytes, from).await.map_err(Error::Io),
            Err(e) => Err(e),
        };
        match sent {
            Ok(_) => drop(bump(&counters.replies)),
            Err(e) => {
                let n = bump(&counters.reply_failures);
                if worth_logging(n) {
                    warn!(%from, error = %e, failed = n, "reply not sent");
                } else {
                    debug!(%from, error = %e, "reply not sent");
                }
            }
        }
    }
}
