use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::{Decode, Encode, FrameReader, FrameWriter};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, Instrument};

use crate::error::Terminal;
use crate::{Config, Error, Result};

/// A connection to a server: a cloneable handle plus two background tasks
/// (one writes, one reads).
///
/// - [`Client::send`]: one-way message.
/// - [`Client::request`]: send, then await the reply.
/// - [`Client::recv`]: the next *unsolicited* message (a push, a greeting):
///   anything that arrives while no request is waiting for a reply.
/// - [`Client::close`]: half-close; the server's last words still arrive.
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
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// To the writer task; bounded (`outbound_queue`).
    commands: mpsc::Sender<Command>,
    /// Unsolicited frames from the reader task, and its final error.
    incoming: tokio::sync::Mutex<mpsc::Receiver<Result<BytesMut>>>,
    /// Bounds requests awaiting replies (`max_in_flight`).
    in_flight: Arc<Semaphore>,
    shared: Arc<Shared>,
    config: Config,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    /// Cancelled when the last handle is dropped, so the reader task ends
    /// even if the server never closes.
    dropped: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

/// State the writer and reader tasks share with the handles.
#[derive(Debug, Default)]
struct Shared {
    /// Reply slots in the order their requests were written. The writer pushes
    /// a slot *before* writing the request, so a reply never finds no slot.
    pending: Mutex<VecDeque<Pending>>,
    /// Set once when the connection ends.
    terminal: Mutex<Option<Terminal>>,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Records the end (first one wins) and fails every waiting request.
    fn end(&self, how: Terminal) {
        let how = self
            .terminal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(how)
            .clone();
        let waiting: Vec<Pending> = self.pending().drain(..).collect();
        for slot in waiting {
            let _ = slot.reply.send(Err(how.to_error()));
        }
    }
}

#[derive(Debug)]
struct Pending {
    reply: oneshot::Sender<Result<BytesMut>>,
    /// Held until the reply arrives (or the connection ends).
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug)]
enum Command {
    Frame(Bytes, Option<Pending>),
    Close(oneshot::Sender<Result<()>>),
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
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        config: Config,
    ) -> Result<Client> {
        let shown = addr.to_string();
        let attempt = async {
            let addrs = tokio::net::lookup_host(addr)
                .await
                .map_err(|source| Error::Resolve {
                    addr: shown.clone(),
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
                addr: shown.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
            }))
        };
        let stream = tokio::time::timeout(config.connect_timeout, attempt)
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: shown.clone(),
                after: config.connect_timeout,
            })??;
        Ok(Self::from_stream(stream, config))
    }

    /// Wraps an established TCP connection.
    pub fn from_stream(stream: TcpStream, config: Config) -> Client {
        // Requests are small and latency-bound; batching is done by the writer.
        let _ = stream.set_nodelay(true);
        let peer_addr = stream.peer_addr().ok();
        let local_addr = stream.local_addr().ok();
        let (read, write) = stream.into_split();
        Self::spawn(read, write, config, peer_addr, local_addr)
    }

    /// Wraps any byte stream (a Unix socket, TLS, `tokio::io::duplex` in tests).
    pub fn from_io<Io>(io: Io, config: Config) -> Client
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        Self::spawn(read, write, config, None, None)
    }

    fn spawn<R, W>(
        read: R,
        write: W,
        config: Config,
        peer_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
    ) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let framing = config.framing();
        let (commands, command_rx) = mpsc::channel(config.outbound_queue);
        let (incoming_tx, incoming) = mpsc::channel(config.incoming_queue);
        let shared = Arc::new(Shared::default());
        let dropped = CancellationToken::new();
        let span = tracing::info_span!("client", peer = ?peer_addr);

        tokio::spawn(
            write_loop(
                FrameWriter::new(write, &framing),
                command_rx,
                shared.clone(),
            )
            .instrument(span.clone()),
        );
        tokio::spawn(
            read_loop(
                FrameReader::new(read, &framing),
                incoming_tx,
                shared.clone(),
                dropped.clone(),
            )
            .instrument(span),
        );
        Client {
            inner: Arc::new(Inner {
                commands,
                incoming: tokio::sync::Mutex::new(incoming),
                in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
                shared,
                config,
                peer_addr,
                local_addr,
                dropped,
            }),
        }
    }

    /// The server's address (`None` for a client made with [`Client::from_io`]).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr
    }

    /// This end's address (`None` for a client made with [`Client::from_io`]).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// Sends a one-way message. Returns once it is queued for the writer,
    /// which sends queued messages in batches.
    ///
    /// # Errors
    /// [`Error::Encode`] or [`Error::FrameTooLarge`] (nothing sent);
    /// [`Error::Closed`] / [`Error::ClosedByPeer`] once the connection is gone.
    pub async fn send<M: Encode>(&self, msg: M) -> Result<()> {
        let frame = self.frame(msg)?;
        self.submit(Command::Frame(frame, None)).await
    }

    /// Sends a request and waits for its reply, decoded as `R`, within the
    /// configured request timeout. See the type's docs for how replies are
    /// paired with requests on the plain wire.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Decode`] if the reply is not an `R`;
    /// [`Error::ClosedByPeer`], [`Error::FrameTooLarge`],
    /// [`Error::UnexpectedEof`] or [`Error::Io`] if the connection ends first;
    /// as [`Client::send`] for the request itself.
    pub async fn request<M: Encode, R: Decode>(&self, msg: M) -> Result<R> {
        self.request_timeout(msg, self.inner.config.request_timeout)
            .await
    }

    /// [`Client::request`] with its own timeout.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn request_timeout<M: Encode, R: Decode>(
        &self,
        msg: M,
        timeout: Duration,
    ) -> Result<R> {
        let frame = self.frame(msg)?;
        let exchange = async {
            let permit = self
                .inner
                .in_flight
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::Closed)?;
            let (reply, answer) = oneshot::channel();
            let slot = Pending {
                reply,
                _permit: permit,
            };
            self.submit(Command::Frame(frame, Some(slot))).await?;
            match answer.await {
                Ok(reply) => reply,
                // The slot was dropped without an answer: the connection ended.
                Err(_) => Err(self.closed_error()),
            }
        };
        let frame = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        R::decode(frame).map_err(Error::Decode)
    }

    /// The next unsolicited message (one that arrived while no request was
    /// waiting), decoded as `M`. `Ok(None)` once the server has closed the
    /// connection and every message before that was taken.
    ///
    /// # Errors
    /// [`Error::Decode`] if this message is not an `M` (the next call goes on
    /// with the next message); once, the error that ended the connection
    /// ([`Error::FrameTooLarge`], [`Error::UnexpectedEof`], [`Error::Io`]).
    ///
    /// # Cancel safety
    /// Cancel-safe: a message is never lost when the future is dropped.
    pub async fn recv<M: Decode>(&self) -> Result<Option<M>> {
        let mut incoming = self.inner.incoming.lock().await;
        match incoming.recv().await {
            Some(Ok(frame)) => M::decode(frame).map(Some).map_err(Error::Decode),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Half-closes: everything already sent is flushed, then the writing side
    /// is shut down, so the server reads end-of-stream ("I'm done sending").
    /// The server can still reply: keep calling [`Client::recv`] until it
    /// returns `Ok(None)`. After this, `send` and `request` fail with
    /// [`Error::Closed`]. Calling it twice is harmless.
    ///
    /// # Errors
    /// [`Error::Io`] if the final flush fails.
    pub async fn close(&self) -> Result<()> {
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

    /// Whether the connection has ended (closed by either side or failed).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.terminal().is_some() || self.inner.commands.is_closed()
    }

    fn frame<M: Encode>(&self, msg: M) -> Result<Bytes> {
        let frame = msg.encode().map_err(Error::Encode)?;
        let limit = self.inner.config.max_frame_length;
        if frame.len() > limit {
            return Err(Error::FrameTooLarge {
                declared: frame.len() as u64,
                limit,
            });
        }
        Ok(frame)
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

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FrameWriter<W>,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
) {
    let mut close_requested: Option<oneshot::Sender<Result<()>>> = None;
    while let Some(command) = commands.recv().await {
        let first = match command {
            Command::Frame(frame, slot) => {
                if let Some(slot) = slot {
                    shared.register(slot);
                }
                frame
            }
            Command::Close(done) => {
                close_requested = Some(done);
                break;
            }
        };
        let batch = writer
            .send_batch(first, || match commands.try_recv().ok()? {
                Command::Frame(frame, slot) => {
                    if let Some(slot) = slot {
                        shared.register(slot);
                    }
                    Some(frame)
                }
                Command::Close(done) => {
                    close_requested = Some(done);
                    None
                }
            })
            .await;
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
            Command::Close(done) => {
                let _ = done.send(Ok(()));
            }
            Command::Frame(_, None) => {}
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    incoming: mpsc::Sender<Result<BytesMut>>,
    shared: Arc<Shared>,
    dropped: CancellationToken,
) {
    let end = loop {
        let next = tokio::select! {
            next = reader.recv() => next,
            () = dropped.cancelled() => break Terminal::Local,
        };
        match next {
            Ok(Some(frame)) => {
                let slot = shared.pending().pop_front();
                match slot {
                    // A timed-out request's late reply is dropped here.
                    Some(slot) => {
                        let _ = slot.reply.send(Ok(frame));
                    }
                    None => {
                        tokio::select! {
                            sent = incoming.send(Ok(frame)) => if sent.is_err() { break Terminal::Local },
                            () = dropped.cancelled() => break Terminal::Local,
                        }
                    }
                }
            }
            Ok(None) => break Terminal::PeerClosed,
            Err(e) => {
                debug!(error = %e, "read failed");
                let how = Terminal::from_error(&e);
                shared.end(how);
                // The caller of recv learns why, once.
                let _ = incoming.try_send(Err(e.into()));
                return;
            }
        }
    };
    debug!(how = ?end, "connection ended");
    shared.end(end);
}
