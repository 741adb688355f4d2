//! The datagram server: [`UdpServer`], its [`UdpServerHandle`], [`Config`]
//! and [`Stats`].

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::Decode;
use futures::FutureExt;
use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::batch::{self, Inbox, Outbox};
use crate::datagram::{self, worth_logging, MAX_DATAGRAM};
use crate::error::is_unreachable;
use crate::{AddrError, Context, Error, Handler, Result};

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

    /// Most datagrams taken from the socket in one system call, and most
    /// replies sent in one: `recvmmsg` and `sendmmsg` on Linux (elsewhere
    /// one at a time). Default 32, as quinn's endpoint; 0 acts as 1, over
    /// 64 as 64. The receive buffers take `batch × (max_datagram + 1)`
    /// bytes, allocated once (2 MiB with the defaults, of which only the
    /// pages datagrams reach become resident: 128 KiB for small ones).
    /// A busy server saves a system call per datagram; an idle one waits
    /// as before, and a lone datagram is answered at once.
    pub batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_datagram: MAX_DATAGRAM,
            max_in_flight: 256,
            shutdown_grace: Duration::from_secs(5),
            recv_buffer: None,
            send_buffer: None,
            batch: 32,
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

    /// Sets [`Config::batch`].
    #[must_use]
    pub fn batch(mut self, datagrams: usize) -> Self {
        self.batch = datagrams;
        self
    }
}

/// Counters of a server's life so far, from [`UdpServerHandle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams received, whatever became of them.
    pub received: u64,
    /// Receive calls that brought datagrams: `received / batches` is how
    /// many a call took on average ([`Config::batch`]).
    pub batches: u64,
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
    batches: AtomicU64,
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
            batches: get(&self.batches),
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
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| Error::Bind(AddrError::new(shown, source)))?;
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
            in_flight: AtomicUsize::new(0),
            max_in_flight: self.config.max_in_flight,
        });
        let recv = Receiver {
            socket: Arc::new(self.socket),
            handler: Arc::new(handler),
            limit: datagram::effective(self.config.max_datagram),
            batch: batch::effective(self.config.batch),
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
        enchufe_engine::grace::drain(&shared.tracker, shared.grace, || {
            warn!(grace = ?shared.grace, "udp handlers still running after the grace period; dropping them");
            shared.abort.cancel();
        })
        .await;
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
    /// Handlers running ([`Config::max_in_flight`]): a counter, not a
    /// semaphore, since nothing ever waits for a slot.
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

impl Shared {
    /// Takes a handler slot, if one is free.
    fn take_slot(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .is_ok()
    }

    fn release_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A slot held by a handler that went to a task of its own: released when
/// the task ends, reply sent or not.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release_slot();
    }
}

/// The receive loop: one task that reads datagrams in batches and runs
/// each one's handler, polled once inline and moved to a task of its own
/// only if it has to wait; the replies of the handlers that answered at
/// once go back together at the end of the batch.
struct Receiver<H> {
    /// Shared with the handler tasks, which send replies on it; closed when
    /// the last of them ends.
    socket: Arc<UdpSocket>,
    handler: Arc<H>,
    limit: usize,
    /// Datagrams per receive call ([`Config::batch`], made effective).
    batch: usize,
    shared: Arc<Shared>,
}

/// Longest pause after a receive error that is not about a datagram (out of
/// buffers, say): short enough to recover fast, long enough not to spin.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl<H: Handler> Receiver<H> {
    async fn run(self) {
        info!(batch = self.batch, "serving");
        let mut inbox = Inbox::new(self.batch, self.limit);
        let mut outbox = Outbox::with_capacity(self.batch);
        let counters = &self.shared.counters;
        let mut backoff = Duration::from_millis(5);
        loop {
            let received = tokio::select! {
                biased;
                () = self.shared.stop.cancelled() => break,
                received = inbox.recv(&self.socket) => received,
            };
            let n = match received {
                Ok(n) => n,
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
            counters.received.fetch_add(n as u64, Ordering::Relaxed);
            counters.batches.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                if let Some((datagram, from)) = inbox.get(i) {
                    self.dispatch(datagram, from, &mut outbox);
                }
            }
            if outbox.is_empty() {
                continue;
            }
            let failed = |e: std::io::Error, to: SocketAddr| {
                let n = bump(&counters.reply_failures);
                if worth_logging(n) {
                    warn!(%to, error = %e, failed = n, "reply not sent");
                } else {
                    debug!(%to, error = %e, "reply not sent");
                }
            };
            // A UDP send waits only while the socket's send buffer is
            // full; past the grace period of a shutdown it waits no more.
            tokio::select! {
                biased;
                () = self.shared.abort.cancelled() => break,
                sent = outbox.flush(&self.socket, failed) => {
                    counters.replies.fetch_add(sent, Ordering::Relaxed);
                }
            }
        }
        info!("stopped receiving");
    }

    /// Runs the handler of one datagram: its reply joins `outbox` if it
    /// answers at once; a handler that waits gets a task of its own, which
    /// sends its reply itself. Dropped and counted instead when it is too
    /// large or every handler slot is busy.
    fn dispatch(&self, datagram: &[u8], from: SocketAddr, outbox: &mut Outbox) {
        let counters = &self.shared.counters;
        if datagram.len() > self.limit {
            let n = bump(&counters.too_large);
            if worth_logging(n) {
                warn!(%from, limit = self.limit, dropped = n, "datagram over the limit; dropped");
            }
            return;
        }
        if !self.shared.take_slot() {
            let n = bump(&counters.busy_drops);
            if worth_logging(n) {
                warn!(%from, dropped = n, "every handler slot is busy; datagram dropped");
            }
            return;
        }
        // The handler owns its request: copied out at its own size, so the
        // batch's buffers are reused at once.
        let payload = BytesMut::from(datagram);
        let ctx = Context {
            peer_addr: from,
            local_addr: self.shared.local_addr,
            len: payload.len(),
        };
        let job = Job {
            handler: self.handler.clone(),
            shared: self.shared.clone(),
            limit: self.limit,
        };
        // The first poll here, in the receive loop: a handler that answers
        // at once (an echo, a lookup) is done without a task of its own,
        // its wakeup and its abort registration, which cost more than the
        // datagram's own syscalls (see BENCHMARKS.md, UDP). Only a handler
        // that waits gets a task, polled again there with a real waker
        // (futures register the waker of their latest poll).
        let mut run = Box::pin(job.answer(payload, ctx));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(reply) = run.as_mut().poll(&mut cx) {
            self.shared.release_slot();
            if let Some(reply) = reply {
                outbox.push(reply, from);
            }
            return;
        }
        let slot = Slot(self.shared.clone());
        let socket = self.socket.clone();
        let abort = self.shared.abort.clone();
        self.shared.tracker.spawn(async move {
            let _slot = slot;
            let counters = &_slot.0.counters;
            tokio::select! {
                () = abort.cancelled() => {}
                () = async {
                    let Some(reply) = run.await else { return };
                    match socket.send_to(&reply, from).await {
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
                } => {}
            }
        });
    }
}

/// One datagram's handling: decode, handler, reply encoded.
struct Job<H> {
    handler: Arc<H>,
    shared: Arc<Shared>,
    limit: usize,
}

impl<H: Handler> Job<H> {
    /// The encoded reply, if the handler gave one that fits; failures are
    /// counted and logged here.
    async fn answer(self, payload: BytesMut, ctx: Context) -> Option<Bytes> {
        let counters = &self.shared.counters;
        let from = ctx.peer_addr;
        let request = match H::Request::decode(payload) {
            Ok(request) => request,
            Err(e) => {
                let n = bump(&counters.undecodable);
                if worth_logging(n) {
                    warn!(%from, error = %e, dropped = n, "datagram does not decode; dropped");
                }
                return None;
            }
        };
        let call = AssertUnwindSafe(self.handler.handle(request, &ctx)).catch_unwind();
        let reply = match call.await {
            Ok(Ok(Some(reply))) => reply,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                bump(&counters.handler_failures);
                warn!(%from, error = %e, "handler failed; no reply");
                return None;
            }
            Err(panic) => {
                bump(&counters.handler_failures);
                let what = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("non-string payload");
                warn!(%from, panic = what, "handler panicked; no reply");
                return None;
            }
        };
        match datagram::encode(reply, self.limit) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                let n = bump(&counters.reply_failures);
                if worth_logging(n) {
                    warn!(%from, error = %e, failed = n, "reply not sent");
                }
                None
            }
        }
    }
}
