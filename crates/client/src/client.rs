use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::mux::{self, Header, Hello, Kind, Profile};
use enchufe_framing::{Decode, Encode, FrameReader, FrameWriter, OutFrame};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, Instrument};

use crate::error::Terminal;
use crate::inbound::Inbound;
use crate::reconnect::EVENTS_QUEUE;
use crate::supervisor::Supervised;
use crate::{Config, Error, Event, Result};

/// A connection to a server: a cloneable handle plus two background tasks
/// (one writes, one reads).
///
/// - [`Client::send`] (alias [`Client::notify`]): one-way message.
/// - [`Client::request`]: send, then await the reply.
/// - [`Client::recv`] and [`Client::pushes`]: the next *unsolicited* message
///   (a push, a greeting): in the plain profile, anything that arrives while
///   no request is waiting for a reply; in the multiplexed profile, exactly
///   the server's push frames.
/// - [`Client::close`]: half-close; the server's last words still arrive.
///
/// The profile ([`Config::profile`]) decides what goes on the wire; the
/// methods are the same in both.
///
/// # What the plain profile can and cannot promise
///
/// On the plain wire (the course's protocol) a frame carries no id and no
/// kind. So `request` takes **the next frame that arrives after the earlier
/// requests got theirs** as its reply. This is exact when the server answers
/// every request exactly once, in order, and pushes nothing while requests
/// are outstanding, which is how enchufe's plain server and the course's
/// `Server` behave for request/reply protocols. A server that pushes while a
/// request is outstanding, or answers some requests with nothing, shifts the
/// pairing; such protocols should use `send` + `recv` and match replies
/// themselves (or the multiplexed profile, which tags every frame).
///
/// # The multiplexed profile
///
/// With [`Profile::Multiplexed`] every frame carries a kind and a request id
/// (`docs/PROTOCOL.md`), and the client uses them:
///
/// - Connecting exchanges hellos before the client is returned, within
///   [`Config::connect_timeout`]: [`Error::VersionMismatch`] and
///   [`Error::NotEnchufe`] say the server is not one to talk to, and a server
///   in the plain profile, which never sends a hello, is
///   [`Error::ConnectTimeout`]. [`Client::connect_with`] does this;
///   for a stream you opened yourself use [`Client::handshake`] or
///   [`Client::handshake_io`] (the sync [`Client::from_stream`] and
///   [`Client::from_io`] cannot wait for a hello).
/// - Each request gets the next id (1, 2, 3, ...) and a reply slot keyed by
///   it, registered before the request can be written. Replies are matched
///   by id, so they may come in any order, and any number of tasks may have
///   requests in flight through clones of one `Client` (up to
///   [`Config::max_in_flight`]).
/// - An error frame for a request fails that request alone with
///   [`Error::Remote`].
/// - A request that times out, or whose future is dropped before its reply,
///   gives its slot back at once and sends the server a `cancel` frame with
///   its id. The cancel is queued without waiting (it is sent from `Drop`):
///   if the outbound queue is full it is skipped, and the server's reply,
///   should one come, is dropped on arrival like any reply for an id the
///   client no longer knows.
/// - [`Client::send`] sends a `notify` frame; [`Client::recv`] and
///   [`Client::pushes`] yield push frames only, never a reply.
/// - A server that breaks the protocol (a frame shorter than its 9-byte
///   header, an unknown kind, a kind only clients send) is hung up on:
///   pending and later calls fail with [`Error::Protocol`].
///
/// ```no_run
/// use enchufe_client::{Client, Config, Profile};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe_client::Result<()> {
/// let config = Config::default().profile(Profile::Multiplexed);
/// let client = Client::connect_with("127.0.0.1:8080", config).await?;
/// // Two requests in flight at once on one connection; replies by id.
/// let (a, b) = tokio::join!(
///     client.request::<_, String>("slow"),
///     client.request::<_, String>("fast"),
/// );
/// println!("{} {}", a?, b?);
/// # Ok(())
/// # }
/// ```
///
/// # Examples
///
/// ```no_run
/// use enchufe_client::Client;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe_client::Result<()> {
/// let client = Client::connect("127.0.0.1:8080").await?;
/// let reply: String = client.request("hola").await?;
/// println!("{reply}");
/// client.close().await?;
/// while let Some(last) = client.recv::<String>().await? {
///     println!("server said: {last}");
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Reconnecting
///
/// With [`Config::reconnect`] set, [`Client::connect_with`] returns a client
/// that keeps itself connected: when the connection drops, a supervisor task
/// redials with backoff (exchanging hellos again in the multiplexed
/// profile), and the same handles go on working on the new connection.
/// Requests in flight when the connection drops fail at once with its error
/// and are **never retried**; calls made while there is no connection wait
/// or fail per [`WhileDown`](crate::WhileDown); [`Client::recv`] and
/// [`Client::pushes`] deliver across connections; [`Client::events`]
/// reports each drop and reconnection. When the backoff gives up, every call
/// fails with [`Error::GaveUp`]. [`Client::close`] stops the supervisor, and
/// so does dropping the last handle.
///
/// ```no_run
/// use enchufe_client::{Client, Config, Event, Reconnect};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe_client::Result<()> {
/// let config = Config::default().reconnect(Reconnect::default());
/// let client = Client::connect_with("127.0.0.1:8080", config).await?;
/// let mut events = client.events();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         if let Event::Reconnected { addr, attempts } = event {
///             println!("back on {addr} after {attempts} attempts");
///         }
///     }
/// });
/// let reply: String = client.request("hola").await?; // waits out a restart
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The connection, or the supervisor that keeps one.
    route: Route,
    /// Unsolicited frames from the reader task(s), and (without reconnect)
    /// the error that ended the connection. Owned here, not by a link, so
    /// that it outlives each connection of a reconnecting client.
    incoming: tokio::sync::Mutex<mpsc::Receiver<Result<BytesMut>>>,
    /// Connection events; receivers come from [`Client::events`].
    events: broadcast::Sender<Event>,
    config: Config,
}

#[derive(Debug)]
enum Route {
    /// One connection for the client's whole life.
    Fixed(Link),
    /// Connections kept up by a supervisor task ([`Config::reconnect`]).
    /// Dropping it stops the task.
    Supervised(Supervised),
}

/// What the tasks of one connection need from the client they serve.
#[derive(Debug, Clone)]
pub(crate) struct Wiring {
    /// Where unsolicited frames go.
    pub(crate) incoming: mpsc::Sender<Result<BytesMut>>,
    /// Where the connection's end is reported.
    pub(crate) events: broadcast::Sender<Event>,
    /// Whether the error that ends the connection goes to `incoming` too
    /// (`recv` returns it once). A reconnecting client's `recv` goes on
    /// across connections, so its links report their end as events only.
    pub(crate) report_end: bool,
}

/// One connection: its writer and reader tasks and what they share. A
/// [`Client`] is one link, or a succession of them when it reconnects.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    inner: Arc<LinkInner>,
}

#[derive(Debug)]
struct LinkInner {
    /// To the writer task; bounded (`outbound_queue`).
    commands: mpsc::Sender<Command>,
    /// The multiplexed profile's next request id. Starts at 1 (0 is the id
    /// of pushes and notifies); a u64 never wraps in practice.
    next_id: AtomicU64,
    /// Bounds requests awaiting replies (`max_in_flight`).
    in_flight: Arc<Semaphore>,
    shared: Arc<Shared>,
    profile: Profile,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    /// Cancelled when the last handle is dropped, so the reader task ends
    /// even if the server never closes.
    dropped: CancellationToken,
}

impl Drop for LinkInner {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

/// State the writer and reader tasks share with the handles.
#[derive(Debug)]
struct Shared {
    /// Plain profile: reply slots in the order their requests were written.
    /// The writer pushes a slot *before* writing the request, so a reply
    /// never finds no slot.
    pending: Mutex<VecDeque<Pending>>,
    /// Multiplexed profile: reply slots by request id. The requesting task
    /// inserts its slot before queueing the request, the reader takes it out
    /// when the reply or error arrives, and the request's drop guard takes it
    /// out if the caller gives up first; whoever takes it answers it.
    by_id: Mutex<HashMap<u64, Pending>>,
    /// Set once when the connection ends.
    terminal: Mutex<Option<Terminal>>,
    /// Cancelled when `terminal` is set: what a reconnecting client's
    /// supervisor waits on, and a lock-free "is this link dead?".
    ended: CancellationToken,
    /// Where the end is reported as [`Event::Disconnected`].
    events: broadcast::Sender<Event>,
}

impl Shared {
    fn new(events: broadcast::Sender<Event>) -> Self {
        Self {
            pending: Mutex::default(),
            by_id: Mutex::default(),
            terminal: Mutex::default(),
            ended: CancellationToken::new(),
            events,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn by_id(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn terminal(&self) -> Option<Terminal> {
        self.terminal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Registers a reply slot, or fails it at once if the connection has
    /// ended. Checked under the `pending` lock, which `end` takes after
    /// setting `terminal`, so no slot can be left unanswered.
    fn register(&self, slot: Pending) {
        let mut pending = self.pending();
        match self.terminal() {
            Some(how) => {
                drop(pending);
                let _ = slot.reply.send(Err(how.to_error()));
            }
            None => pending.push_back(slot),
        }
    }

    /// Registers the slot of multiplexed request `id`, or, if the connection
    /// has ended, drops the slot and returns why. Same check under the lock
    /// as [`Shared::register`], so no slot is left unanswered.
    fn register_id(&self, id: u64, slot: Pending) -> Result<()> {
        let mut by_id = self.by_id();
        match self.terminal() {
            Some(how) => Err(how.to_error()),
            None => {
                by_id.insert(id, slot);
                Ok(())
            }
        }
    }

    /// Takes the slot of multiplexed request `id` out, if it is still there:
    /// the one who gets it answers it.
    fn take(&self, id: u64) -> Option<Pending> {
        self.by_id().remove(&id)
    }

    /// Records the end (first one wins) and fails every waiting request.
    fn end(&self, how: Terminal) {
        let (how, first) = {
            let mut terminal = self.terminal.lock().unwrap_or_else(PoisonError::into_inner);
            let first = terminal.is_none();
            (terminal.get_or_insert(how).clone(), first)
        };
        if first {
            self.ended.cancel();
            // No receiver is fine: nobody asked.
            let _ = self.events.send(Event::Disconnected {
                error: Arc::new(how.to_error()),
            });
        }
        let mut waiting: Vec<Pending> = self.pending().drain(..).collect();
        waiting.extend(self.by_id().drain().map(|(_, slot)| slot));
        for slot in waiting {
            let _ = slot.reply.send(Err(how.to_error()));
        }
    }
}

#[derive(Debug)]
struct Pending {
    /// The reply's body, or why there is none.
    reply: oneshot::Sender<Result<BytesMut>>,
    /// Held until the slot is answered or dropped: a request's place among
    /// the `max_in_flight`.
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug)]
enum Command {
    /// A frame to write; with a slot (plain requests), the writer registers
    /// it just before the frame goes into the batch.
    Frame(OutFrame, Option<Pending>),
    /// A multiplexed request, its slot already in [`Shared::by_id`]; the id
    /// lets the writer fail that slot if it never writes the request.
    Request(u64, OutFrame),
    Close(oneshot::Sender<Result<()>>),
}

/// A multiplexed request between registering its slot and its answer.
///
/// Dropped with the slot still registered means the caller gave up (its
/// timeout fired, or its future was dropped): the guard takes the slot back,
/// which frees the in-flight permit at once, and tells the server with a
/// `cancel` frame if the request was queued for writing.
struct Outstanding<'a> {
    inner: &'a LinkInner,
    id: u64,
    /// Whether the request frame went into the outbound queue (a request
    /// that never did needs no cancel).
    queued: bool,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        // If the reader (or the connection's end) already took the slot, the
        // answer was delivered and nothing is owed to anyone.
        let Some(slot) = self.inner.shared.take(self.id) else {
            return;
        };
        drop(slot);
        if !self.queued {
            return;
        }
        let id = self.id;
        let cancel = OutFrame::with_header(
            Header {
                kind: Kind::Cancel,
                id,
            },
            Bytes::new(),
        );
        // Drop cannot wait for room. Skipping the cancel is safe: the server
        // answers the request after all, and the reader drops the reply of
        // an id that is no longer registered.
        match self.inner.commands.try_send(Command::Frame(cancel, None)) {
            Ok(()) => trace!(id, "request abandoned; cancel queued"),
            Err(_) => debug!(
                id,
                "request abandoned; cancel skipped (queue full or closed)"
            ),
        }
    }
}

impl Client {
    /// Connects with the default [`Config`].
    ///
    /// # Errors
    /// [`Error::Resolve`], [`Error::Refused`], [`Error::ConnectTimeout`] or
    /// [`Error::Connect`].
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Client> {
        Self::connect_with(addr, Config::default()).await
    }

    /// Connects with the given configuration, trying every address the name
    /// resolves to (IPv6 and IPv4) within `connect_timeout`.
    ///
    /// In the multiplexed profile ([`Config::profile`]) it then exchanges
    /// hellos with the server before returning, within the same
    /// `connect_timeout`, counted from the call.
    ///
    /// With [`Config::reconnect`] set, the client it returns keeps itself
    /// connected (see [Reconnecting](Client#reconnecting)); this first
    /// connect is still tried once, and its failure returned.
    ///
    /// # Errors
    /// As [`Client::connect`]; in the multiplexed profile also
    /// [`Error::VersionMismatch`], [`Error::NotEnchufe`],
    /// [`Error::ConnectTimeout`] when no hello arrives in time (a server in
    /// the plain profile sends none), [`Error::Encode`] for a
    /// [`Config::node_id`] over 255 bytes, and the errors of a connection
    /// that ends during the exchange ([`Error::ClosedByPeer`], [`Error::Io`],
    /// ...).
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        config: Config,
    ) -> Result<Client> {
        let shown = addr.to_string();
        let (wiring, incoming) = Wiring::new(&config);
        let link = dial(addr, &shown, &config, &wiring).await?;
        let route = match config.reconnect.clone() {
            None => Route::Fixed(link),
            Some(policy) => Route::Supervised(Supervised::start(
                link,
                shown,
                config.clone(),
                policy,
                wiring,
            )),
        };
        Ok(Self::assemble(route, incoming, config))
    }

    /// Connects to a server on a Unix domain socket (see
    /// `Server::bind_unix`), then, in the multiplexed profile, exchanges
    /// hellos, all within `connect_timeout`. Everything after that is as
    /// over TCP. [`Client::peer_addr`] is `None`. A Unix client keeps its one
    /// connection: [`Config::reconnect`] is not used here.
    ///
    /// # Errors
    /// [`Error::ConnectUnix`] (no socket, refused, no permission);
    /// [`Error::ConnectTimeout`]; in the multiplexed profile, as
    /// [`Client::connect_with`] for the hello exchange.
    #[cfg(unix)]
    pub async fn connect_unix(path: impl AsRef<std::path::Path>, config: Config) -> Result<Client> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let deadline = Instant::now() + config.connect_timeout;
        let stream = tokio::time::timeout_at(deadline, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: shown.clone(),
                after: config.connect_timeout,
            })?
            .map_err(|source| Error::ConnectUnix {
                path: path.to_owned(),
                source,
            })?;
        let (read, write) = stream.into_split();
        let (wiring, incoming) = Wiring::fixed(&config);
        let link = Link::start(read, write, &config, None, None, deadline, &shown, wiring).await?;
        Ok(Self::assemble(Route::Fixed(link), incoming, config))
    }

    /// Wraps an established TCP connection.
    ///
    /// # Panics
    /// If `config.profile` is [`Profile::Multiplexed`]: that profile starts
    /// with a hello exchange, which a sync constructor cannot wait for. Use
    /// [`Client::handshake`], which serves both profiles.
    pub fn from_stream(stream: TcpStream, config: Config) -> Client {
        assert_no_hello(&config, "from_stream", "handshake");
        let (read, write, peer_addr, local_addr) = tcp_parts(stream);
        let (wiring, incoming) = Wiring::fixed(&config);
        let link = Link::spawn(read, write, &config, peer_addr, local_addr, wiring);
        Self::assemble(Route::Fixed(link), incoming, config)
    }

    /// Wraps any byte stream (a Unix socket, TLS, `tokio::io::duplex` in tests).
    ///
    /// # Panics
    /// If `config.profile` is [`Profile::Multiplexed`], as
    /// [`Client::from_stream`]; use [`Client::handshake_io`].
    pub fn from_io<Io>(io: Io, config: Config) -> Client
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        assert_no_hello(&config, "from_io", "handshake_io");
        let (read, write) = tokio::io::split(io);
        let (wiring, incoming) = Wiring::fixed(&config);
        let link = Link::spawn(read, write, &config, None, None, wiring);
        Self::assemble(Route::Fixed(link), incoming, config)
    }

    /// Wraps an established TCP connection, first exchanging hellos with the
    /// server if the profile has them (multiplexed), within
    /// `connect_timeout`. In the plain profile it is [`Client::from_stream`]
    /// and returns at once. (The name follows hyper's `handshake`, which
    /// likewise starts a connection whatever its protocol needs first.)
    ///
    /// # Errors
    /// In the multiplexed profile, as [`Client::connect_with`] for the hello
    /// exchange; [`Error::ConnectTimeout`] names the peer's address. Never in
    /// the plain profile.
    pub async fn handshake(stream: TcpStream, config: Config) -> Result<Client> {
        let deadline = Instant::now() + config.connect_timeout;
        let shown = stream
            .peer_addr()
            .map_or_else(|_| "<unknown>".to_owned(), |addr| addr.to_string());
        let (wiring, incoming) = Wiring::fixed(&config);
        let link = Link::start_tcp(stream, &config, deadline, shown, wiring).await?;
        Ok(Self::assemble(Route::Fixed(link), incoming, config))
    }

    /// [`Client::handshake`] for any byte stream (a Unix socket, TLS,
    /// `tokio::io::duplex` in tests); in the plain profile it is
    /// [`Client::from_io`].
    ///
    /// # Errors
    /// As [`Client::handshake`]; [`Error::ConnectTimeout`] names the address
    /// `"<io>"`.
    pub async fn handshake_io<Io>(io: Io, config: Config) -> Result<Client>
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        let deadline = Instant::now() + config.connect_timeout;
        let (read, write) = tokio::io::split(io);
        let (wiring, incoming) = Wiring::fixed(&config);
        let link = Link::start(read, write, &config, None, None, deadline, "<io>", wiring).await?;
        Ok(Self::assemble(Route::Fixed(link), incoming, config))
    }

    fn assemble(
        route: Route,
        incoming: mpsc::Receiver<Result<BytesMut>>,
        config: Config,
    ) -> Client {
        let events = match &route {
            Route::Fixed(link) => link.inner.shared.events.clone(),
            Route::Supervised(supervised) => supervised.events().clone(),
        };
        Client {
            inner: Arc::new(Inner {
                route,
                incoming: tokio::sync::Mutex::new(incoming),
                events,
                config,
            }),
        }
    }

    /// The server's address: `None` for a client made with
    /// [`Client::from_io`], and for a reconnecting client while it has no
    /// connection.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.link_now()?.inner.peer_addr
    }

    /// This end's address: `None` as for [`Client::peer_addr`].
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.link_now()?.inner.local_addr
    }

    /// Sends a one-way message. Returns once it is queued for the writer,
    /// which sends queued messages in batches. In the multiplexed profile
    /// the message goes in a `notify` frame (id 0), which the server never
    /// answers.
    ///
    /// # Errors
    /// [`Error::Encode`] or [`Error::FrameTooLarge`] (nothing sent);
    /// [`Error::Closed`] / [`Error::ClosedByPeer`] once the connection is gone.
    /// Reconnecting client: [`Error::Disconnected`] while there is no
    /// connection (per [`WhileDown`](crate::WhileDown)), [`Error::GaveUp`]
    /// once it has stopped.
    pub async fn send<M: Encode>(&self, msg: M) -> Result<()> {
        let body = self.body(msg)?;
        let frame = if self.multiplexed() {
            OutFrame::with_header(
                Header {
                    kind: Kind::Notify,
                    id: 0,
                },
                body,
            )
        } else {
            OutFrame::plain(body)
        };
        self.link().await?.submit(Command::Frame(frame, None)).await
    }

    /// [`Client::send`] by the multiplexed protocol's name for a one-way
    /// message; the same in both profiles.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub async fn notify<M: Encode>(&self, msg: M) -> Result<()> {
        self.send(msg).await
    }

    /// Sends a request and waits for its reply, decoded as `R`, within the
    /// configured request timeout. See the type's docs for how replies are
    /// paired with requests on the plain wire, and by id in the multiplexed
    /// profile.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Decode`] if the reply is not an `R`;
    /// [`Error::ClosedByPeer`], [`Error::FrameTooLarge`],
    /// [`Error::UnexpectedEof`] or [`Error::Io`] if the connection ends first
    /// (a reconnecting client does not retry the request: the server may
    /// have acted on it); as [`Client::send`] for the request itself.
    /// Multiplexed profile only: [`Error::Remote`] when the server answers
    /// with an error frame, [`Error::Protocol`] when it breaks the protocol.
    ///
    /// # Cancel safety
    /// Dropping the future gives up the request. In the multiplexed profile
    /// its slot is freed at once and the server is sent a `cancel` (see the
    /// type's docs); in the plain profile the slot stays until the reply
    /// arrives, so that later replies still pair with their own requests.
    pub async fn request<M: Encode, R: Decode>(&self, msg: M) -> Result<R> {
        self.request_timeout(msg, self.inner.config.request_timeout)
            .await
    }

    /// [`Client::request`] with its own timeout. For a reconnecting client
    /// the timeout also bounds the wait for a connection.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn request_timeout<M: Encode, R: Decode>(
        &self,
        msg: M,
        timeout: Duration,
    ) -> Result<R> {
        let frame = self.request_frame(self.body(msg)?, timeout).await?;
        R::decode(frame).map_err(Error::Decode)
    }

    /// A request with an encoded body, answered by the reply's frame.
    pub(crate) async fn request_frame(&self, body: Bytes, timeout: Duration) -> Result<BytesMut> {
        let exchange = async { self.link().await?.exchange(body).await };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// The next unsolicited message (one that arrived while no request was
    /// waiting), decoded as `M`. `Ok(None)` once the server has closed the
    /// connection and every message before that was taken. In the
    /// multiplexed profile: the body of the next push frame (replies never
    /// come here). A reconnecting client delivers across connections and
    /// returns `Ok(None)` only once it has stopped ([`Client::close`], or
    /// after [`Error::GaveUp`]).
    ///
    /// # Errors
    /// [`Error::Decode`] if this message is not an `M` (the next call goes on
    /// with the next message); once, the error that ended the connection
    /// ([`Error::FrameTooLarge`], [`Error::UnexpectedEof`], [`Error::Io`],
    /// [`Error::Protocol`]); a reconnecting client reports those as
    /// [`Event`]s instead, and returns [`Error::GaveUp`] once if it gives up.
    ///
    /// # Cancel safety
    /// Cancel-safe: a message is never lost when the future is dropped.
    pub async fn recv<M: Decode>(&self) -> Result<Option<M>> {
        match self.recv_frame().await {
            Some(Ok(frame)) => M::decode(frame).map(Some).map_err(Error::Decode),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// The next unsolicited frame, undecoded. Cancel-safe.
    pub(crate) async fn recv_frame(&self) -> Option<Result<BytesMut>> {
        self.inner.incoming.lock().await.recv().await
    }

    /// The unsolicited messages as a [`Stream`]: each item is what
    /// [`Client::recv`] would return, and the stream ends where `recv`
    /// returns `Ok(None)`. Pushes in the multiplexed profile; in the plain
    /// profile, messages that arrived while no request was waiting.
    ///
    /// The stream holds a handle to the connection, so it keeps the
    /// connection open while it lives. It is not `Unpin`: pin it
    /// (`std::pin::pin!`, `Box::pin`) to call `StreamExt::next`. Calls to
    /// `recv` and other streams on the same connection take messages from the
    /// same queue: each message goes to one of them.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn run(client: enchufe_client::Client) -> enchufe_client::Result<()> {
    /// let mut pushes = std::pin::pin!(client.pushes::<String>());
    /// while let Some(push) = pushes.next().await {
    ///     println!("server says: {}", push?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn pushes<M: Decode>(&self) -> impl Stream<Item = Result<M>> {
        futures::stream::unfold(self.clone(), |client| async move {
            match client.recv::<M>().await {
                Ok(Some(msg)) => Some((Ok(msg), client)),
                Ok(None) => None,
                Err(e) => Some((Err(e), client)),
            }
        })
    }

    /// What happens to the connection from now on: each drop
    /// ([`Event::Disconnected`]), and for a reconnecting client each
    /// reconnection and the end ([`Event::Reconnected`], [`Event::GaveUp`]),
    /// in the order they happened.
    ///
    /// Each receiver gets every event sent after it was made. The queue holds
    /// 64 events; a receiver that falls further behind loses the oldest and
    /// its next `recv` returns `RecvError::Lagged(n)` with how many, then
    /// goes on with the oldest kept. Events are rare (a few per outage), so
    /// that takes a receiver nobody reads.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Half-closes: everything already sent is flushed, then the writing side
    /// is shut down, so the server reads end-of-stream ("I'm done sending").
    /// The server can still reply: keep calling [`Client::recv`] until it
    /// returns `Ok(None)`. After this, `send` and `request` fail with
    /// [`Error::Closed`]. Calling it twice is harmless. A reconnecting client
    /// stops reconnecting first.
    ///
    /// # Errors
    /// [`Error::Io`] if the final flush fails.
    pub async fn close(&self) -> Result<()> {
        match &self.inner.route {
            Route::Fixed(link) => link.close().await,
            Route::Supervised(supervised) => match supervised.close() {
                Some(link) => link.close().await,
                None => Ok(()),
            },
        }
    }

    /// Whether this client can no longer send: after [`Client::close`] (the
    /// half-close; `recv` may still deliver the server's last messages), or
    /// once the connection has ended. A reconnecting client is closed only
    /// once it has stopped (closed, or given up); while it is redialing see
    /// [`Client::is_connected`].
    pub fn is_closed(&self) -> bool {
        match &self.inner.route {
            Route::Fixed(link) => link.is_closed(),
            Route::Supervised(supervised) => supervised.is_stopped(),
        }
    }

    /// Whether a connection is up right now: a call made now would go out
    /// on it without waiting.
    pub fn is_connected(&self) -> bool {
        self.link_now().is_some_and(|link| !link.is_closed())
    }

    /// The link to use now, waiting for one per [`WhileDown`](crate::WhileDown)
    /// if the client is reconnecting. A fixed client lends its own, so the
    /// hot path costs nothing; a supervised one costs an `Arc` clone.
    async fn link(&self) -> Result<Cow<'_, Link>> {
        match &self.inner.route {
            Route::Fixed(link) => Ok(Cow::Borrowed(link)),
            Route::Supervised(supervised) => supervised.link().await.map(Cow::Owned),
        }
    }

    /// The link right now, if any.
    fn link_now(&self) -> Option<Cow<'_, Link>> {
        match &self.inner.route {
            Route::Fixed(link) => Some(Cow::Borrowed(link)),
            Route::Supervised(supervised) => supervised.link_now().map(Cow::Owned),
        }
    }

    fn multiplexed(&self) -> bool {
        self.inner.config.profile == Profile::Multiplexed
    }

    /// Encodes a message and checks that its frame fits the limit, header
    /// included: a frame over it would fail in the writer and end the
    /// connection, instead of failing this one call.
    pub(crate) fn body<M: Encode>(&self, msg: M) -> Result<Bytes> {
        let body = msg.encode().map_err(Error::Encode)?;
        let header = if self.multiplexed() {
            mux::HEADER_LEN
        } else {
            0
        };
        let declared = body.len() + header;
        let limit = self.inner.config.max_frame_length;
        if declared > limit {
            return Err(Error::FrameTooLarge {
                declared: declared as u64,
                limit,
            });
        }
        Ok(body)
    }
}

impl Wiring {
    /// A client's incoming queue and events, for links that report their
    /// end to `recv` unless the client reconnects.
    fn new(config: &Config) -> (Wiring, mpsc::Receiver<Result<BytesMut>>) {
        let (incoming, incoming_rx) = mpsc::channel(config.incoming_queue);
        let (events, _) = broadcast::channel(EVENTS_QUEUE);
        let wiring = Wiring {
            incoming,
            events,
            report_end: config.reconnect.is_none(),
        };
        (wiring, incoming_rx)
    }

    /// As [`Wiring::new`] for a client that cannot reconnect.
    fn fixed(config: &Config) -> (Wiring, mpsc::Receiver<Result<BytesMut>>) {
        let (mut wiring, incoming) = Self::new(config);
        wiring.report_end = true;
        (wiring, incoming)
    }
}

/// Resolves `addr`, connects within `connect_timeout` and (multiplexed)
/// exchanges hellos within the same deadline: one connection attempt.
pub(crate) async fn dial(
    addr: impl ToSocketAddrs,
    shown: &str,
    config: &Config,
    wiring: &Wiring,
) -> Result<Link> {
    let deadline = Instant::now() + config.connect_timeout;
    let attempt = async {
        let addrs = tokio::net::lookup_host(addr)
            .await
            .map_err(|source| Error::Resolve {
                addr: shown.to_owned(),
                source,
            })?;
        let mut last = None;
        for candidate in addrs {
            match TcpStream::connect(candidate).await {
                Ok(stream) => return Ok(stream),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Some(Error::Refused { addr: candidate });
                }
                Err(source) => {
                    last = Some(Error::Connect {
                        addr: candidate,
                        source,
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Resolve {
            addr: shown.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        }))
    };
    let stream = tokio::time::timeout_at(deadline, attempt)
        .await
        .map_err(|_| Error::ConnectTimeout {
            addr: shown.to_owned(),
            after: config.connect_timeout,
        })??;
    Link::start_tcp(stream, config, deadline, shown.to_owned(), wiring.clone()).await
}

impl Link {
    async fn start_tcp(
        stream: TcpStream,
        config: &Config,
        deadline: Instant,
        shown: String,
        wiring: Wiring,
    ) -> Result<Link> {
        let (read, write, peer_addr, local_addr) = tcp_parts(stream);
        Self::start(
            read, write, config, peer_addr, local_addr, deadline, &shown, wiring,
        )
        .await
    }

    /// The hello exchange if the profile has one, then the tasks.
    #[allow(clippy::too_many_arguments)] // private; each is one fact about the connection
    async fn start<R, W>(
        read: R,
        write: W,
        config: &Config,
        peer_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
        deadline: Instant,
        shown: &str,
        wiring: Wiring,
    ) -> Result<Link>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let framing = config.framing();
        let mut reader = FrameReader::new(read, &framing);
        let mut writer = FrameWriter::new(write, &framing);
        if config.profile == Profile::Multiplexed {
            tokio::time::timeout_at(
                deadline,
                exchange_hellos(&mut reader, &mut writer, &config.node_id),
            )
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: shown.to_owned(),
                after: config.connect_timeout,
            })??;
        }
        Ok(Self::spawn_framed(
            reader, writer, config, peer_addr, local_addr, wiring,
        ))
    }

    fn spawn<R, W>(
        read: R,
        write: W,
        config: &Config,
        peer_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
        wiring: Wiring,
    ) -> Link
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let framing = config.framing();
        let reader = FrameReader::new(read, &framing);
        let writer = FrameWriter::new(write, &framing);
        Self::spawn_framed(reader, writer, config, peer_addr, local_addr, wiring)
    }

    /// Starts the writer and reader tasks. The reader is taken framed, not
    /// raw, because after a hello exchange its buffer may already hold the
    /// server's next frames.
    fn spawn_framed<R, W>(
        reader: FrameReader<R>,
        writer: FrameWriter<W>,
        config: &Config,
        peer_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
        wiring: Wiring,
    ) -> Link
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (commands, command_rx) = mpsc::channel(config.outbound_queue);
        let shared = Arc::new(Shared::new(wiring.events));
        let dropped = CancellationToken::new();
        let abort = CancellationToken::new();
        let span = tracing::info_span!("client", peer = ?peer_addr);

        tokio::spawn(
            write_loop(writer, command_rx, shared.clone(), abort.clone()).instrument(span.clone()),
        );
        tokio::spawn(
            read_loop(
                reader,
                config.profile,
                wiring.incoming,
                wiring.report_end,
                shared.clone(),
                dropped.clone(),
                abort,
            )
            .instrument(span),
        );
        Link {
            inner: Arc::new(LinkInner {
                commands,
                next_id: AtomicU64::new(1),
                in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
                shared,
                profile: config.profile,
                peer_addr,
                local_addr,
                dropped,
            }),
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr
    }

    /// Whether the connection has ended (lock-free).
    pub(crate) fn is_ended(&self) -> bool {
        self.inner.shared.ended.is_cancelled()
    }

    /// Resolves when the connection has ended.
    pub(crate) async fn ended(&self) {
        self.inner.shared.ended.cancelled().await;
    }

    /// Sends a request body and waits for the reply frame, with no timeout
    /// of its own (the caller's bounds the whole call).
    async fn exchange(&self, body: Bytes) -> Result<BytesMut> {
        let permit = self
            .inner
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        if self.inner.profile == Profile::Multiplexed {
            self.exchange_by_id(body, permit).await
        } else {
            self.exchange_in_order(body, permit).await
        }
    }

    /// Plain profile: the slot is registered by the writer, in write order.
    async fn exchange_in_order(
        &self,
        body: Bytes,
        permit: OwnedSemaphorePermit,
    ) -> Result<BytesMut> {
        let (reply, answer) = oneshot::channel();
        let slot = Pending {
            reply,
            _permit: permit,
        };
        self.submit(Command::Frame(OutFrame::plain(body), Some(slot)))
            .await?;
        match answer.await {
            Ok(reply) => reply,
            // The slot was dropped without an answer: the connection ended.
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Multiplexed profile: the slot is registered under a fresh id before
    /// the request is queued, and a guard takes it back if this future is
    /// dropped first.
    async fn exchange_by_id(&self, body: Bytes, permit: OwnedSemaphorePermit) -> Result<BytesMut> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let slot = Pending {
            reply,
            _permit: permit,
        };
        self.inner.shared.register_id(id, slot)?;
        let mut outstanding = Outstanding {
            inner: &self.inner,
            id,
            queued: false,
        };
        let frame = OutFrame::with_header(
            Header {
                kind: Kind::Request,
                id,
            },
            body,
        );
        self.submit(Command::Request(id, frame)).await?;
        outstanding.queued = true;
        match answer.await {
            Ok(reply) => reply,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Half-closes the connection (see [`Client::close`]).
    pub(crate) async fn close(&self) -> Result<()> {
        let (done, finished) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Close(done))
            .await
            .is_err()
        {
            return Ok(()); // the writer already ended: nothing left to close
        }
        finished.await.unwrap_or(Ok(()))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.shared.terminal().is_some() || self.inner.commands.is_closed()
    }

    async fn submit(&self, command: Command) -> Result<()> {
        if let Some(how) = self.inner.shared.terminal() {
            return Err(how.to_error());
        }
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> Error {
        self.inner
            .shared
            .terminal()
            .map_or(Error::Closed, |how| how.to_error())
    }
}

/// Refuses the sync constructors a profile that starts with a hello.
fn assert_no_hello(config: &Config, constructor: &str, instead: &str) {
    assert!(
        config.profile != Profile::Multiplexed,
        "Client::{constructor} cannot wait for the multiplexed hello exchange; \
         use Client::{instead}"
    );
}

fn tcp_parts(
    stream: TcpStream,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
    Option<SocketAddr>,
    Option<SocketAddr>,
) {
    // Requests are small and latency-bound; batching is done by the writer.
    let _ = stream.set_nodelay(true);
    let peer_addr = stream.peer_addr().ok();
    let local_addr = stream.local_addr().ok();
    let (read, write) = stream.into_split();
    (read, write, peer_addr, local_addr)
}

/// Sends our hello and reads the server's (PROTOCOL.md, section 1).
async fn exchange_hellos<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    node_id: &str,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = Hello::new(node_id).encode().map_err(Error::Encode)?;
    // Each side sends its hello without waiting for the other's, so sending
    // before reading cannot deadlock.
    writer.send(ours).await?;
    let theirs = reader.recv().await?.ok_or(Error::ClosedByPeer)?;
    let hello = Hello::decode(&theirs)?;
    debug!(server = %hello.node_id, "hello exchanged");
    Ok(())
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FrameWriter<W>,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    abort: CancellationToken,
) {
    let mut close_requested: Option<oneshot::Sender<Result<()>>> = None;
    loop {
        // `abort`: the server broke the protocol, so the connection ends now.
        // Returning drops this half (and the reader has dropped its own), so
        // the socket closes; queued requests' slots are dropped with the
        // queue, and their callers get the error the reader recorded.
        let command = tokio::select! {
            biased;
            () = abort.cancelled() => return,
            command = commands.recv() => match command {
                Some(command) => command,
                None => break,
            },
        };
        let first = match command {
            Command::Frame(frame, slot) => {
                if let Some(slot) = slot {
                    shared.register(slot);
                }
                frame
            }
            Command::Request(_, frame) => frame,
            Command::Close(done) => {
                close_requested = Some(done);
                break;
            }
        };
        let batch = writer.send_batch(first, || match commands.try_recv().ok()? {
            Command::Frame(frame, slot) => {
                if let Some(slot) = slot {
                    shared.register(slot);
                }
                Some(frame)
            }
            Command::Request(_, frame) => Some(frame),
            Command::Close(done) => {
                close_requested = Some(done);
                None
            }
        });
        let batch = tokio::select! {
            biased;
            () = abort.cancelled() => return,
            batch = batch => batch,
        };
        match batch {
            Ok(n) => trace!(frames = n, "flushed"),
            Err(e) => {
                debug!(error = %e, "write failed");
                shared.end(Terminal::from_error(&e));
                return;
            }
        }
        if close_requested.is_some() {
            break;
        }
    }
    // Every handle is gone or close() was called: finish sending, half-close.
    commands.close();
    let closed = writer.close().await.map_err(Error::from);
    debug!("sending side closed");
    if let Some(done) = close_requested {
        let _ = done.send(closed);
    }
    // Commands queued behind the close are refused; their requests fail.
    while let Ok(command) = commands.try_recv() {
        match command {
            Command::Frame(_, Some(slot)) => {
                let _ = slot.reply.send(Err(Error::Closed));
            }
            Command::Request(id, _) => {
                if let Some(slot) = shared.take(id) {
                    let _ = slot.reply.send(Err(Error::Closed));
                }
            }
            Command::Close(done) => {
                let _ = done.send(Ok(()));
            }
            Command::Frame(_, None) => {}
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    profile: Profile,
    incoming: mpsc::Sender<Result<BytesMut>>,
    report_end: bool,
    shared: Arc<Shared>,
    dropped: CancellationToken,
    abort: CancellationToken,
) {
    let end = loop {
        let next = tokio::select! {
            next = reader.recv() => next,
            () = dropped.cancelled() => break Terminal::Local,
        };
        match next {
            Ok(Some(frame)) => {
                let unsolicited = if profile == Profile::Multiplexed {
                    match Inbound::parse(frame) {
                        Ok(Inbound::Reply { id, outcome }) => {
                            match shared.take(id) {
                                Some(slot) => {
                                    let _ = slot.reply.send(outcome);
                                }
                                // Its request timed out or was dropped (and
                                // cancelled): nobody waits for this any more.
                                None => trace!(id, "reply for an abandoned request dropped"),
                            }
                            continue;
                        }
                        Ok(Inbound::Push(body)) => body,
                        Err(what) => {
                            debug!(what, "protocol violation; closing the connection");
                            shared.end(Terminal::Protocol(what));
                            abort.cancel();
                            // The caller of recv learns why, once.
                            if report_end {
                                let _ = incoming.try_send(Err(Error::Protocol(what)));
                            }
                            return;
                        }
                    }
                } else {
                    let slot = shared.pending().pop_front();
                    match slot {
                        // A timed-out request's late reply is dropped here.
                        Some(slot) => {
                            let _ = slot.reply.send(Ok(frame));
                            continue;
                        }
                        None => frame,
                    }
                };
                tokio::select! {
                    sent = incoming.send(Ok(unsolicited)) => if sent.is_err() { break Terminal::Local },
                    () = dropped.cancelled() => break Terminal::Local,
                }
            }
            Ok(None) => break Terminal::PeerClosed,
            Err(e) => {
                debug!(error = %e, "read failed");
                let how = Terminal::from_error(&e);
                shared.end(how);
                // The caller of recv learns why, once.
                if report_end {
                    let _ = incoming.try_send(Err(e.into()));
                }
                return;
            }
        }
    };
    debug!(how = ?end, "connection ended");
    shared.end(end);
}
