use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::mux::{self, Header, Kind, Profile};
use enchufe_framing::{Decode, Encode, OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::dial::{dial, tcp_parts, UNIX_PREFIX};
use crate::link::{Link, Wiring};
use crate::supervisor::Supervised;
use crate::{Config, Error, Event, FileRegion, Pipeline, Pushes, Result, Unsupported};

/// A connection to a server: a cloneable handle plus one background task
/// that drives the connection (writes requests in batches, reads replies).
///
/// - [`Client::send`] (alias [`Client::notify`]): one-way message.
/// - [`Client::request`]: send, then await the reply.
/// - [`Client::request_file`]: a request whose body ends in a region of a
///   file, sent with `sendfile` on plain TCP.
/// - [`Client::recv`] and [`Client::pushes`]: the next *unsolicited* message
///   (a push, a greeting): in the plain profile, anything that arrives while
///   no request is waiting for a reply; in the multiplexed profile, exactly
///   the server's push frames.
/// - [`Client::close`]: half-close; the server's last words still arrive.
///
/// The profile ([`Config::profile`]) decides what goes on the wire; the
/// methods are the same in both. The crate docs say what each profile
/// promises ([plain](crate#the-plain-profiles-promise),
/// [multiplexed](crate#the-multiplexed-profile-in-detail)) and how a client
/// [keeps itself connected](crate#reconnecting) ([`Config::reconnect`]).
///
/// # Examples
///
/// ```no_run
/// use enchufe::client::Client;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe::client::Result<()> {
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
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The connection, or the supervisor that keeps one.
    route: Route,
    /// Unsolicited frames from the link driver(s), and (without reconnect)
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

impl Client {
    /// Connects with the default [`Config`] (the multiplexed profile).
    ///
    /// # Errors
    /// [`Error::Resolve`], [`Error::Refused`], [`Error::ConnectTimeout`] or
    /// [`Error::Connect`]; as [`Client::connect_with`] for the hello exchange.
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
    /// [`Error::Framing`] with the framing `VersionMismatch`, `BadHello` (a
    /// hello that is malformed), or `ProfileMismatch`
    /// ([`Error::is_profile_mismatch`]) when the server speaks the
    /// plain profile (no hello in time, a message or our own hello back, a
    /// close instead of a hello), [`Error::Encode`] for a
    /// [`Config::node_id`] over 255 bytes, and the errors of a connection
    /// that ends during the exchange ([`Error::ClosedByPeer`], [`Error::Framing`],
    /// ...).
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        config: Config,
    ) -> Result<Client> {
        let shown = addr.to_string();
        let (wiring, incoming) = Wiring::new(&config);
        let link = dial(&shown, &config, &wiring).await?;
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
    /// over TCP, reconnecting included ([`Config::reconnect`]: the path is
    /// dialed again). [`Client::peer_addr`] is `None`, and
    /// [`Event::Reconnected`](crate::Event::Reconnected), which carries an
    /// IP address, is not sent for a Unix socket.
    ///
    /// The same as [`Client::connect_with`] with the address
    /// `unix:PATH` ([`UNIX_PREFIX`]), which `MultiClient::add` and the
    /// peers' `connect` take too.
    ///
    /// # Errors
    /// [`Error::ConnectUnix`] (no socket, refused, no permission);
    /// [`Error::ConnectTimeout`]; in the multiplexed profile, as
    /// [`Client::connect_with`] for the hello exchange.
    #[cfg(unix)]
    pub async fn connect_unix(path: impl AsRef<std::path::Path>, config: Config) -> Result<Client> {
        let addr = format!("{UNIX_PREFIX}{}", path.as_ref().display());
        Self::connect_with(addr.as_str(), config).await
    }

    /// Wraps an established TCP connection.
    ///
    /// # Panics
    /// Unless `config.profile` is [`Profile::Plain`]: the multiplexed
    /// profile (the default) starts with a hello exchange, which a sync
    /// constructor cannot wait for. Use [`Client::handshake`], which serves
    /// both profiles.
    pub fn from_stream(stream: TcpStream, config: Config) -> Client {
        assert_no_hello(&config, "from_stream", "handshake");
        let (stream, addrs) = tcp_parts(stream);
        let (wiring, incoming) = Wiring::fixed(&config);
        let link = Link::spawn(Wire::new(stream, &config.framing()), &config, addrs, wiring);
        Self::assemble(Route::Fixed(link), incoming, config)
    }

    /// Wraps any byte stream (a Unix socket, TLS, `tokio::io::duplex` in tests).
    ///
    /// # Panics
    /// Unless `config.profile` is [`Profile::Plain`], as
    /// [`Client::from_stream`]; use [`Client::handshake_io`].
    pub fn from_io<Io>(io: Io, config: Config) -> Client
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        assert_no_hello(&config, "from_io", "handshake_io");
        let (wiring, incoming) = Wiring::fixed(&config);
        // Boxed: the driver needs `Unpin`, which this constructor never asked for.
        let wire = Wire::new(Box::pin(io), &config.framing());
        let link = Link::spawn(wire, &config, (None, None), wiring);
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
    /// exchange. Never in the plain profile.
    pub async fn handshake(stream: TcpStream, config: Config) -> Result<Client> {
        let deadline = Instant::now() + config.connect_timeout;
        let (wiring, incoming) = Wiring::fixed(&config);
        let (stream, addrs) = tcp_parts(stream);
        let link = Link::start(stream, &config, addrs, deadline, wiring).await?;
        Ok(Self::assemble(Route::Fixed(link), incoming, config))
    }

    /// [`Client::handshake`] for any byte stream (a Unix socket, TLS,
    /// `tokio::io::duplex` in tests); in the plain profile it is
    /// [`Client::from_io`].
    ///
    /// # Errors
    /// As [`Client::handshake`].
    pub async fn handshake_io<Io>(io: Io, config: Config) -> Result<Client>
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        let deadline = Instant::now() + config.connect_timeout;
        let (wiring, incoming) = Wiring::fixed(&config);
        // Boxed: the driver needs `Unpin`, which this constructor never asked for.
        let link = Link::start(Box::pin(io), &config, (None, None), deadline, wiring).await?;
        Ok(Self::assemble(Route::Fixed(link), incoming, config))
    }

    fn assemble(
        route: Route,
        incoming: mpsc::Receiver<Result<BytesMut>>,
        config: Config,
    ) -> Client {
        let events = match &route {
            Route::Fixed(link) => link.events(),
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
        self.link_now()?.peer_addr()
    }

    /// This end's address: `None` as for [`Client::peer_addr`].
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.link_now()?.local_addr()
    }

    /// Sends a one-way message. Returns once it is queued for the writer,
    /// which sends queued messages in batches. In the multiplexed profile
    /// the message goes in a `notify` frame (id 0), which the server never
    /// answers.
    ///
    /// # Errors
    /// [`Error::Encode`] or a frame over the limit ([`Error::Framing`],
    /// [`Error::is_frame_too_large`]; nothing sent);
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
        self.link().await?.send(frame).await
    }

    /// Sends one message of `len` bytes read from `reader` (a file, a
    /// socket, any `AsyncRead`), a chunk at a time: memory stays bounded by
    /// a few chunks (under 1 MiB) whatever `len` is, up to `u32::MAX` (the
    /// most a 4-byte header can say) and past `max_frame_length`. Exactly
    /// `len` bytes are read; nothing else is sent on this connection until
    /// they are. Returns once the whole message is queued for writing.
    ///
    /// This is the course's file protocol (a 4-byte size, then the file):
    /// the other end reads one frame of `len` bytes (an enchufe server with
    /// `Config::max_stream_length` set, in `Handler::handle_stream`). Its
    /// answer, if any, arrives through [`Client::recv`]. Plain profile only.
    ///
    /// ```no_run
    /// # async fn demo(client: enchufe::client::Client) -> enchufe::client::Result<()> {
    /// // Any AsyncRead: a tokio::fs::File (with its metadata().len()), a
    /// // socket, or bytes in memory as here.
    /// let data = vec![7u8; 50 << 20];
    /// client.send_stream(&data[..], data.len() as u64).await?;
    /// let thanks: String = client.recv().await?.expect("an answer");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] in the multiplexed profile (large data goes
    /// as many messages there, so other requests are not held up); a frame
    /// over `u32::MAX` ([`Error::is_frame_too_large`]); the reader's error,
    /// or [`Error::Framing`] when it ends before `len` bytes: the message
    /// cannot be finished, so the connection ends; [`Error::Closed`] and the
    /// like when the connection is gone.
    pub async fn send_stream<R>(&self, reader: R, len: u64) -> Result<()>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        if self.multiplexed() {
            return Err(Error::Unsupported(Unsupported::StreamsInMultiplexed));
        }
        if len > u64::from(u32::MAX) {
            return Err(enchufe_framing::Error::TooLargeToSend {
                len,
                limit: u32::MAX as usize,
            }
            .into());
        }
        self.link().await?.send_stream(reader, len).await
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
    /// [`Error::ClosedByPeer`] or [`Error::Framing`] (a frame over the limit, the
    /// stream cut inside a frame, the socket failed) if the connection ends first
    /// (a reconnecting client does not retry the request: the server may
    /// have acted on it); as [`Client::send`] for the request itself.
    /// Multiplexed profile only: [`Error::Remote`] when the server answers
    /// with an error frame, [`Error::Framing`] (a framing `Malformed`) when it breaks the protocol.
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

    /// Sends a request whose body is `head` (encoded) followed by the bytes
    /// of `region`, and waits for its reply, decoded as `R`, within the
    /// configured request timeout: one ordinary frame, which the other end
    /// cannot tell from a [`Client::request`] with the same bytes.
    ///
    /// On a plain TCP connection on Linux the region goes from the file's
    /// pages into the socket with `sendfile`, never copied through this
    /// process; on every other transport (TLS, WebSocket, a Unix socket, an
    /// in-memory stream) it is read into the body first, on the blocking
    /// pool. Either way nothing else is written on the connection while
    /// the region goes out; other requests queue behind it. The transfer
    /// protocol's chunks go this way.
    ///
    /// ```no_run
    /// # async fn demo(client: enchufe::client::Client) -> enchufe::client::Result<()> {
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use enchufe::client::FileRegion;
    /// let file = Arc::new(std::fs::File::open("datos.bin")?);
    /// let reply: Bytes = client
    ///     .request_file(Bytes::from_static(b"put:"), FileRegion::new(file, 0, 4096))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Client::request`]; a head and region over the frame limit is
    /// [`Error::is_frame_too_large`] (nothing sent);
    /// [`Error::FileRegion`] when the region cannot be read or the file
    /// ends before it does (nothing sent).
    ///
    /// # Cancel safety
    /// As [`Client::request`].
    pub async fn request_file<M: Encode, R: Decode>(
        &self,
        head: M,
        region: FileRegion,
    ) -> Result<R> {
        let timeout = self.inner.config.request_timeout;
        let head = head.encode().map_err(Error::Encode)?;
        let header = if self.multiplexed() {
            mux::HEADER_LEN
        } else {
            0
        };
        let declared = (header + head.len()) as u64 + region.len() as u64;
        let limit = self.inner.config.max_frame_length;
        if declared > limit as u64 {
            return Err(enchufe_framing::Error::TooLargeToSend {
                len: declared,
                limit,
            }
            .into());
        }
        let deadline = Instant::now() + timeout;
        let link = self.link_by(deadline).await?;
        let frame = link.exchange_file(head, region, deadline, timeout).await?;
        R::decode(frame).map_err(Error::Decode)
    }

    /// Bytes of [`FileRegion`]s this client's connection has sent so far
    /// with `sendfile` (plain TCP on Linux), and read into a buffer instead
    /// (every other transport); `(0, 0)` while it has no connection. For
    /// tests and benchmarks that check which path a transfer took; not
    /// covered by semver.
    #[doc(hidden)]
    pub fn file_region_bytes(&self) -> (u64, u64) {
        self.link_now()
            .map_or((0, 0), |link| link.file_region_bytes())
    }

    /// A request with an encoded body, answered by the reply's frame.
    ///
    /// No timer is armed per request on a live connection: the link's
    /// driver keeps every request's deadline in one timer. Waiting for a
    /// connection (reconnecting), a permit or room in the queue is bounded
    /// by the same deadline.
    pub(crate) async fn request_frame(&self, body: Bytes, timeout: Duration) -> Result<BytesMut> {
        let deadline = Instant::now() + timeout;
        let link = self.link_by(deadline).await?;
        link.exchange(body, deadline, timeout).await
    }

    /// Sends `requests` on one connection with up to `depth` in flight
    /// (at most [`Config::max_in_flight`]), and returns their replies in
    /// the order of the requests, as a [`Stream`](futures::Stream) driven
    /// by the task that polls it: [`Pipeline`]. The way to pipeline from
    /// one task: no task per request, no wakeup and no channel per reply.
    /// Requests are taken from the iterator only as room frees, so it may
    /// be endless.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn run(client: enchufe::client::Client) -> enchufe::client::Result<()> {
    /// let requests = (0..1000).map(|n| format!("hola {n}"));
    /// let mut replies = client.pipeline::<_, String>(requests, 64);
    /// while let Some(reply) = replies.next().await {
    ///     println!("{}", reply?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Each item is what [`Client::request`] would return for its request.
    pub fn pipeline<I, R>(&self, requests: I, depth: usize) -> Pipeline<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Encode,
        R: Decode,
    {
        let config = &self.inner.config;
        let depth = depth.clamp(1, config.max_in_flight.max(1));
        Pipeline::new(
            self.clone(),
            requests.into_iter(),
            depth,
            config.request_timeout,
        )
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
    /// ([`Error::Framing`]: a frame over the limit, a cut frame, a socket error;
    /// a protocol violation); a reconnecting client reports those as
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

    /// The unsolicited messages as a [`Stream`](futures::Stream) ([`Pushes`]): each item is
    /// what [`Client::recv`] would return, and the stream ends where `recv`
    /// returns `Ok(None)`. Pushes in the multiplexed profile; in the plain
    /// profile, messages that arrived while no request was waiting.
    ///
    /// The stream is `Unpin` (call `StreamExt::next` on it directly) and
    /// keeps the connection open while it lives. Calls to `recv` and other
    /// streams on the same connection take messages from the same queue:
    /// each message goes to one of them.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn run(client: enchufe::client::Client) -> enchufe::client::Result<()> {
    /// let mut pushes = client.pushes::<String>();
    /// while let Some(push) = pushes.next().await {
    ///     println!("server says: {}", push?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn pushes<M: Decode>(&self) -> Pushes<M> {
        Pushes::new(self.clone())
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
    /// [`Error::Framing`] if the final flush fails.
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

    /// The link to use now, as [`Client::link`], waiting no later than
    /// `deadline`. Out of time before a connection came: nothing was sent,
    /// and the reason is the outage ([`Error::Disconnected`]), not a slow
    /// reply.
    async fn link_by(&self, deadline: Instant) -> Result<Cow<'_, Link>> {
        match &self.inner.route {
            Route::Fixed(link) => Ok(Cow::Borrowed(link)),
            Route::Supervised(_) => tokio::time::timeout_at(deadline, self.link())
                .await
                .map_err(|_| Error::Disconnected)?,
        }
    }

    /// The link to use now, as [`Client::link`], owned.
    pub(crate) async fn link_owned(&self) -> Result<Link> {
        self.link().await.map(Cow::into_owned)
    }

    /// The link right now, if any.
    fn link_now(&self) -> Option<Cow<'_, Link>> {
        match &self.inner.route {
            Route::Fixed(link) => Some(Cow::Borrowed(link)),
            Route::Supervised(supervised) => supervised.link_now().map(Cow::Owned),
        }
    }

    fn multiplexed(&self) -> bool {
        self.inner.config.profile != Profile::Plain
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
            return Err(enchufe_framing::Error::TooLargeToSend {
                len: declared as u64,
                limit,
            }
            .into());
        }
        Ok(body)
    }
}

/// Refuses the sync constructors a profile that starts with a hello.
fn assert_no_hello(config: &Config, constructor: &str, instead: &str) {
    assert!(
        config.profile == Profile::Plain,
        "Client::{constructor} cannot wait for the multiplexed hello exchange (the default \
         profile); use Client::{instead}, or set Profile::Plain"
    );
}
