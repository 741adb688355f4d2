//! The two seams between enchufe's roles and a network: [`Accept`] (where
//! a server gets its connections) and [`Connect`] (how a client, a
//! `MultiClient` or a peer opens one).
//!
//! TCP and Unix sockets are built in and need neither: these traits are
//! for everything else, such as a simulated network (turmoil, through
//! `enchufe::sim`), an in-memory `tokio::io::duplex` pair in a test, or a
//! transport of your own. What they yield is any `AsyncRead + AsyncWrite`,
//! boxed ([`BoxIo`]); the one connection driver serves it exactly as it
//! serves a `TcpStream`.
//!
//! ```text
//!  Server::from_accept(impl Accept) --accept()--> (BoxIo, peer address) --> the driver
//!  Config::connector(impl Connect)  --connect(addr)--> Connected { io }  --> the driver
//! ```
//!
//! Both are object safe, so a configuration can hold one behind an `Arc`
//! without a type parameter; the boxing costs an allocation per connection
//! and a vtable call per read, which the benchmarked TCP path never pays
//! (it does not go through these traits).

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// `AsyncRead + AsyncWrite + Send`, as one trait to box.
pub trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}

/// A byte stream of any transport, boxed.
pub type BoxIo = Pin<Box<dyn Io>>;

/// A boxed, `Send` future: what the methods of [`Accept`] and [`Connect`]
/// return, so that they stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connection opened by a [`Connect`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Connected {
    /// The byte stream.
    pub io: BoxIo,
    /// The other end's address, when the transport has one: what
    /// `Client::peer_addr` reports, and what a reconnecting client's
    /// `Event::Reconnected` carries (no event without it).
    pub peer_addr: Option<SocketAddr>,
    /// This end's address, when the transport has one.
    pub local_addr: Option<SocketAddr>,
}

impl Connected {
    /// A connection with its addresses.
    pub fn new(
        io: impl AsyncRead + AsyncWrite + Send + 'static,
        peer_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
    ) -> Connected {
        Connected {
            io: Box::pin(io),
            peer_addr,
            local_addr,
        }
    }
}

impl Debug for dyn Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io")
    }
}

/// Opens connections to addresses, in place of TCP.
///
/// Set on a client with `client::Config::connector` (used by every dial
/// and redial, and so by `MultiClient`) and on a server with
/// `Server::connector` (used by `ServerHandle::connect`, and so by peers).
/// The address is passed as the caller wrote it (`"server:9000"`), not
/// resolved: naming is the transport's business.
///
/// The caller bounds the call with its own connect or handshake timeout,
/// so an implementation need not.
///
/// ```
/// use enchufe::net::{BoxFuture, Connect, Connected};
///
/// /// Dials TCP, as the built-in path does (for illustration).
/// #[derive(Debug)]
/// struct Tcp;
///
/// impl Connect for Tcp {
///     fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, std::io::Result<Connected>> {
///         Box::pin(async move {
///             let stream = tokio::net::TcpStream::connect(addr).await?;
///             let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
///             Ok(Connected::new(stream, peer, local))
///         })
///     }
/// }
/// ```
pub trait Connect: Debug + Send + Sync + 'static {
    /// Opens one connection to `addr`.
    ///
    /// # Errors
    /// The transport's error. `ConnectionRefused` is reported by clients
    /// as a refused connection (`client::Error::Refused` needs an IP
    /// address: with none it is `client::Error::ConnectVia`).
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Connected>>;
}

/// A source of accepted connections for a server, in place of a TCP
/// listener: `Server::from_accept`.
///
/// The server calls [`Accept::accept`] in its accept loop (after taking a
/// connection permit) and backs off on errors, exactly as with TCP.
///
/// # Cancel safety
/// `accept` is raced against shutdown and dropped there; a connection it
/// had accepted but not yet returned is lost, as with
/// `TcpListener::accept` (which is cancel safe because it takes nothing
/// from the kernel until it returns).
pub trait Accept: Debug + Send + 'static {
    /// Waits for the next connection and the other end's address.
    ///
    /// # Errors
    /// A failure to accept; the server logs it and tries again after a
    /// backoff.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>>;

    /// The address connections come to (what `ServerHandle::local_addr`
    /// says).
    ///
    /// # Errors
    /// When the transport cannot tell.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An in-memory listener: each `accept` hands out one end of a fresh
    /// duplex pair, whose other end the test keeps.
    #[derive(Debug)]
    struct Duplexes(tokio::sync::mpsc::Receiver<tokio::io::DuplexStream>);

    impl Accept for Duplexes {
        fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
            Box::pin(async move {
                let io = self.0.recv().await.ok_or(io::ErrorKind::BrokenPipe)?;
                Ok((Box::pin(io) as BoxIo, "10.0.0.1:1".parse().unwrap()))
            })
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok("10.0.0.2:2".parse().unwrap())
        }
    }

    #[tokio::test]
    async fn a_boxed_accept_moves_bytes_and_reports_its_end() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut listener: Box<dyn Accept> = Box::new(Duplexes(rx));
        let (mut ours, theirs) = tokio::io::duplex(64);
        tx.send(theirs).await.unwrap();
        let (mut io, from) = listener.accept().await.unwrap();
        assert_eq!(from, "10.0.0.1:1".parse().unwrap());
        ours.write_all(b"ping").await.unwrap();
        let mut got = [0; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        drop(tx);
        let err = listener.accept().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
