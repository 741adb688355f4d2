//! The datagram client: [`UdpClient`] and its [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use enchufe_framing::{Decode, Encode};
use tokio::net::{lookup_host, ToSocketAddrs, UdpSocket};
use tokio::sync::Mutex;
use tracing::debug;

use crate::datagram::{self, MAX_DATAGRAM};
use crate::error::is_unreachable;
use crate::{AddrError, Error, Result};

/// How a [`UdpClient`] waits and retries.
///
/// ```
/// use std::time::Duration;
/// use enchufe::udp::client::Config;
/// let config = Config::default().timeout(Duration::from_millis(200)).retries(5);
/// assert_eq!((config.timeout, config.retries), (Duration::from_millis(200), 5));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long each attempt of [`UdpClient::request`] waits for the reply
    /// before the request is sent again. Default 1 s: well over a round trip
    /// on any network that works (a LAN's is under a millisecond, across
    /// continents about 300 ms), short enough that a lost datagram costs a
    /// second, as DNS resolvers do.
    pub timeout: Duration,

    /// How many times [`UdpClient::request`] sends the request again after
    /// an attempt times out. Default 3, so at most 4 datagrams and 4 s. Every
    /// retry sends the same bytes: the server may see a request more than
    /// once, so requests that change state should be safe to repeat.
    pub retries: u32,

    /// Largest datagram sent or received, in bytes. Default
    /// [`MAX_DATAGRAM`] (65,507); values over 65,527 act as 65,527. A
    /// message over it is not sent ([`Error::TooLarge`]); a datagram over it
    /// is dropped and reported ([`Error::Truncated`]).
    pub max_datagram: usize,

    /// The socket's receive buffer (`SO_RCVBUF`), in bytes; `None` (the
    /// default) keeps the system's. Replies that arrive faster than they
    /// are read wait here; past it the kernel drops them. Linux caps it
    /// at `net.core.rmem_max`; [`UdpClient::buffer_sizes`] tells what was
    /// granted.
    pub recv_buffer: Option<usize>,

    /// The socket's send buffer (`SO_SNDBUF`), in bytes; `None` (the
    /// default) keeps the system's. Capped at `net.core.wmem_max`.
    pub send_buffer: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(1),
            retries: 3,
            max_datagram: MAX_DATAGRAM,
            recv_buffer: None,
            send_buffer: None,
        }
    }
}

impl Config {
    enchufe_framing::setters! {
        timeout: Duration;
        retries: u32;
        max_datagram: usize;
        recv_buffer: usize => Some;
        send_buffer: usize => Some;
    }
}

/// At most this many datagrams already waiting are discarded before a
/// request is sent, so a flood cannot keep [`UdpClient::request`] from
/// starting. Far more than the late replies a sane exchange leaves behind.
const MAX_STALE: usize = 64;

/// A UDP client: a socket connected to one server (so only the server's
/// datagrams are received, and ICMP errors are reported), with one-way
/// [`send`](Self::send), [`recv`](Self::recv), and [`request`](Self::request)
/// with a timeout and retries.
///
/// # Pairing replies with requests
///
/// A plain datagram, as in the course, carries no request id: a reply is
/// simply the next datagram from the server's address. So `request`
/// discards the datagrams already waiting when it starts (late replies to
/// earlier requests), and requests from several tasks take turns (one
/// request in flight per client). What it cannot tell apart is a late reply
/// to *this* request's earlier attempt, or to an earlier request, that
/// arrives after the request was sent: it is taken as the reply. With a
/// server that answers every request once, this happens only when a reply
/// takes longer than [`Config::timeout`]. A protocol that cannot afford it
/// puts an id in its messages and checks it.
///
/// `recv` and `request` read the same socket: a task waiting in `recv`
/// while another makes requests may take a reply.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use enchufe::udp::{client::Config, UdpClient};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), enchufe::udp::Error> {
/// let config = Config::default().timeout(Duration::from_millis(500)).retries(2);
/// let client = UdpClient::connect_with("127.0.0.1:15000", config).await?;
/// let reply: String = client.request("hola").await?;
/// client.send("one-way").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct UdpClient {
    socket: UdpSocket,
    peer: SocketAddr,
    config: Config,
    limit: usize,
    /// Held by a request from its first send to its reply, so two requests
    /// never wait for the same datagram.
    turn: Mutex<()>,
}

impl UdpClient {
    /// A client for the server at `addr`, with the default [`Config`].
    ///
    /// # Errors
    /// [`Error::Connect`] if the name does not resolve or no socket can be
    /// connected to it. Nothing is sent: a server that is not there is found
    /// out by the first request.
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<UdpClient> {
        Self::connect_with(addr, Config::default()).await
    }

    /// [`connect`](Self::connect) with a [`Config`]. Tries each address the
    /// name resolves to, binding a local socket of the same family on a free
    /// port.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        config: Config,
    ) -> Result<UdpClient> {
        let shown = addr.to_string();
        let fail = |source| Error::Connect(AddrError::new(shown.clone(), source));
        let mut last = None;
        for peer in lookup_host(addr).await.map_err(fail)? {
            let local: SocketAddr = if peer.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = match UdpSocket::bind(local).await {
                Ok(socket) => socket,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            // A buffer size the socket refuses fails this address, as a
            // bind or connect error does.
            if let Err(e) = datagram::set_buffers(&socket, config.recv_buffer, config.send_buffer) {
                last = Some(e);
                continue;
            }
            match socket.connect(peer).await {
                Ok(()) => return Ok(Self::from_socket(socket, peer, config)),
                Err(e) => last = Some(e),
            }
        }
        Err(fail(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
        })))
    }

    fn from_socket(socket: UdpSocket, peer: SocketAddr, config: Config) -> UdpClient {
        UdpClient {
            socket,
            peer,
            limit: datagram::effective(config.max_datagram),
            config,
            turn: Mutex::new(()),
        }
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The socket's receive and send buffer sizes as the kernel reports
    /// them, in bytes (Linux reports twice what was set).
    ///
    /// # Errors
    /// [`Error::Io`] if the OS cannot tell.
    pub fn buffer_sizes(&self) -> Result<(usize, usize)> {
        Ok(datagram::buffer_sizes(&self.socket)?)
    }

    /// Our socket's address.
    ///
    /// # Errors
    /// [`Error::Io`] if the OS cannot tell.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    /// Sends `msg` as one datagram, expecting no reply.
    ///
    /// # Errors
    /// [`Error::Encode`] or [`Error::TooLarge`] (nothing sent);
    /// [`Error::Refused`] if an earlier datagram found nothing listening;
    /// [`Error::Io`].
    pub async fn send<M: Encode>(&self, msg: M) -> Result<()> {
        let bytes = datagram::encode(msg, self.limit)?;
        self.send_bytes(&bytes).await
    }

    /// Waits for the next datagram from the server and decodes it. Waits
    /// without limit: wrap it in `tokio::time::timeout` to bound it.
    ///
    /// # Errors
    /// [`Error::Truncated`] for a datagram over the limit (dropped; the next
    /// `recv` goes on), [`Error::Decode`], [`Error::Refused`], [`Error::Io`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a datagram is received whole or left for the next call.
    pub async fn recv<M: Decode>(&self) -> Result<M> {
        let payload = self.recv_bytes().await?;
        M::decode(payload).map_err(Error::Decode)
    }

    /// Sends `msg` and waits for the server's reply, sending it again each
    /// time [`Config::timeout`] passes without one, up to
    /// [`Config::retries`] times. See [Pairing replies with
    /// requests](Self#pairing-replies-with-requests) for what counts as the
    /// reply.
    ///
    /// # Errors
    /// [`Error::Timeout`] after every attempt; [`Error::Refused`] at once
    /// when nothing listens at the server's address (not retried);
    /// [`Error::TooLarge`], [`Error::Encode`] (nothing sent);
    /// [`Error::Truncated`] when the reply was over the limit and
    /// [`Error::Decode`] when it does not decode (not retried: the server
    /// answered); [`Error::Io`].
    ///
    /// # Cancel safety
    /// Dropping the future stops waiting; a reply that arrives later is
    /// discarded by the next request.
    pub async fn request<M: Encode, R: Decode>(&self, msg: M) -> Result<R> {
        let bytes = datagram::encode(msg, self.limit)?;
        let _turn = self.turn.lock().await;
        self.discard_waiting();
        let attempts = self.config.retries.saturating_add(1);
        for attempt in 1..=attempts {
            self.send_bytes(&bytes).await?;
            match tokio::time::timeout(self.config.timeout, self.recv_bytes()).await {
                Ok(reply) => return R::decode(reply?).map_err(Error::Decode),
                Err(_) => debug!(attempt, peer = %self.peer, "no reply in time"),
            }
        }
        Err(Error::Timeout {
            attempts,
            each: self.config.timeout,
        })
    }

    async fn send_bytes(&self, bytes: &Bytes) -> Result<()> {
        self.socket
            .send(bytes)
            .await
            .map(drop)
            .map_err(|e| Error::from_io(e, self.peer))
    }

    async fn recv_bytes(&self) -> Result<bytes::BytesMut> {
        let mut buf = datagram::recv_connected(&self.socket, self.limit)
            .await
            .map_err(|e| Error::from_io(e, self.peer))?;
        datagram::take(&mut buf, self.limit)
    }

    /// Drops datagrams (and ICMP errors) already waiting: nothing a new
    /// request should take as its reply.
    fn discard_waiting(&self) {
        for _ in 0..MAX_STALE {
            // Into no room at all: a datagram socket drops what does not
            // fit, so this takes a datagram off the queue without a buffer.
            match self.socket.try_recv(&mut []) {
                Ok(_) => debug!(peer = %self.peer, "discarded a late datagram"),
                Err(e) if is_unreachable(&e) => {}
                Err(_) => break,
            }
        }
    }
}
