use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use enchufe_framing::Encode;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::connection::Parts;
use crate::stats::{Counters, Stats};
use crate::task::{read_loop, write_loop, Ctx};
use crate::{Config, Connection, ConnectionId, Disconnect, Error, Handler, Result};

/// A bound TCP listener, ready to serve a [`Handler`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use enchufe_server::{handler_fn, Server};
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
    listener: TcpListener,
    config: Config,
}

impl Server {
    /// Binds a listener (IPv4 or IPv6; port 0 picks a free port).
    ///
    /// # Errors
    /// [`Error::Bind`] when no address could be bound.
    pub async fn bind(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Server> {
        let shown = addr.to_string();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: shown,
                source,
            })?;
        Ok(Self::from_listener(listener))
    }

    /// Serves on a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server {
            listener,
            config: Config::default(),
        }
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
        Ok(self.listener.local_addr()?)
    }

    /// Starts serving in the background and returns a handle to the running
    /// server. Must be called within a Tokio runtime.
    pub fn serve<H: Handler>(self, handler: H) -> ServerHandle {
        let local_addr = self
            .listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let shared = Arc::new(Shared {
            local_addr,
            registry: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace: self.config.shutdown_grace,
            counters: Arc::new(Counters::default()),
        });
        let ctx = Arc::new(Ctx {
            handler: Arc::new(handler),
            framing: self.config.framing(),
            config: self.config.clone(),
            shutdown: shared.shutdown.clone(),
            abort: shared.abort.clone(),
        });
        let accept = accept_loop(self.listener, self.config, ctx, shared.clone());
        shared
            .tracker
            .spawn(accept.instrument(info_span!("server", addr = %local_addr)));
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

/// State shared by the accept loop, the connection tasks and every handle.
#[derive(Debug)]
struct Shared {
    local_addr: SocketAddr,
    /// Live connections, for push-by-id, broadcast and counting. Plain data
    /// behind a std mutex: never held across an await.
    registry: Mutex<HashMap<ConnectionId, Connection>>,
    shutdown: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    counters: Arc<Counters>,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Connection>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
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
        let frame = msg.encode()?;
        let conns = self.connections();
        let mut delivered = 0;
        for conn in conns {
            let queued = conn
                .push_frame(frame.clone())
                .and_then(|frame| conn.offer_now(frame));
            if queued.is_ok() {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// Counters so far: connections accepted, pushes dropped, slow clients
    /// disconnected.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Shuts down gracefully: stops accepting, stops reading new requests,
    /// lets handlers already running finish and their replies be sent, then
    /// closes every connection. Handlers still running after the grace period
    /// ([`Config::shutdown_grace`]) are cancelled. Returns when every task of
    /// the server has ended. Calling it again just waits.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.shutdown.cancel();
        shared.tracker.close();
        if tokio::time::timeout(shared.grace, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(grace = ?shared.grace, "shutdown grace period over; cancelling handlers");
            shared.abort.cancel();
            shared.tracker.wait().await;
        }
    }

    /// Waits until the server has stopped (after [`ServerHandle::shutdown`]
    /// was called, from this handle or another).
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await;
        self.shared.tracker.wait().await;
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    config: Config,
    ctx: Arc<Ctx<H>>,
    shared: Arc<Shared>,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let next_id = AtomicU64::new(1);
    let mut backoff = Duration::from_millis(1);
    info!("accepting connections");
    loop {
        // The permit comes first: at the limit we stop accepting, and the
        // kernel's backlog holds newcomers instead of our memory.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
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
                    backoff = (backoff * 2).min(config.accept_backoff_max);
                    continue;
                }
            },
            () = shared.shutdown.cancelled() => break,
        };
        let id = ConnectionId(next_id.fetch_add(1, Ordering::Relaxed));
        Counters::add(&shared.counters.connections_accepted, 1);
        let span = info_span!("conn", id = id.0, peer = %peer_addr);
        let ctx = ctx.clone();
        let shared_for_task = shared.clone();
        let config = config.clone();
        shared.tracker.spawn(
            async move {
                serve_connection(stream, peer_addr, id, &config, &ctx, &shared_for_task).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    info!("stopped accepting");
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    peer_addr: SocketAddr,
    id: ConnectionId,
    config: &Config,
    ctx: &Ctx<H>,
    shared: &Shared,
) {
    // Small request/reply frames must not wait for Nagle; batching is ours.
    if let Err(e) = stream.set_nodelay(true) {
        warn!(error = %e, "cannot set TCP_NODELAY");
    }
    let local_addr = stream.local_addr().unwrap_or(shared.local_addr);
    let (conn, outbox) = Connection::new(Parts {
        id,
        peer_addr,
        local_addr,
        max_frame_length: config.max_frame_length,
        write_timeout: config.write_timeout,
        queue: config.outbound_queue,
        closing: CancellationToken::new(),
        profile: config.profile,
        policy: config.slow_consumer,
        counters: shared.counters.clone(),
    });
    info!("accepted");
    shared.registry().insert(id, conn.clone());

    let (read, write) = stream.into_split();
    let writer = shared.tracker.spawn(
        write_loop(
            conn.clone(),
            outbox,
            write,
            ctx.framing.clone(),
            config.write_timeout,
            ctx.abort.clone(),
        )
        .in_current_span(),
    );
    let reason = read_loop(ctx, &conn, read).await;
    // Out of the registry before the client can see EOF, so that a client
    // that has seen its connection end never still counts.
    shared.registry().remove(&id);
    conn.close();
    match &reason {
        Disconnect::Error(e) => warn!(error = %e, "closed"),
        other => info!(reason = %other, "closed"),
    }
    if AssertUnwindSafe(ctx.handler.on_disconnect(&conn, &reason))
        .catch_unwind()
        .await
        .is_err()
    {
        warn!("on_disconnect panicked");
    }
    // The writer ends within the write timeout (or at once on abort).
    let _ = writer.await;
}

use futures::FutureExt;
use std::panic::AssertUnwindSafe;
