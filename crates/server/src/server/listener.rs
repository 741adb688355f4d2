//! Where a server accepts connections, and what it accepts or dials.

use std::net::SocketAddr;

use enchufe_engine::net::Accept;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};

use crate::layer::BoxIo;
use crate::{AddrError, Error, Result};

/// Where a server accepts connections.
#[derive(Debug)]
pub(super) enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener),
    /// Any other transport ([`Server::from_accept`]).
    Custom(Box<dyn Accept>),
}

/// An accepted or dialed connection, before it is served.
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    /// Dialed and wrapped already (TLS), or of another transport (accepted
    /// by [`Server::from_accept`], dialed by [`Server::connector`]): boxed,
    /// so the connection loop is compiled once for every such transport,
    /// not once per stream type.
    Boxed(BoxIo),
}

impl Listener {
    pub(super) async fn accept(&mut self) -> std::io::Result<(Stream, SocketAddr)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, addr) = listener.accept().await?;
                Ok((Stream::Tcp(stream), addr))
            }
            #[cfg(unix)]
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), UNIX_ADDR))
            }
            Listener::Custom(listener) => {
                let (io, addr) = listener.accept().await?;
                Ok((Stream::Boxed(io), addr))
            }
        }
    }
}

/// What [`Connection::peer_addr`] and [`ServerHandle::local_addr`] say for a
/// Unix socket, which has no IP address: `0.0.0.0:0`.
pub(super) const UNIX_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The peer address of a dialed connection whose connector could not tell:
/// `0.0.0.0:0`, as for a Unix socket.
pub(super) const UNKNOWN_ADDR: SocketAddr = UNIX_ADDR;
/// Binds a TCP listener; [`Error::Bind`] names the address asked for.
pub(super) async fn bind_tcp(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<TcpListener> {
    let shown = addr.to_string();
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind(AddrError::new(shown, source)))
}
