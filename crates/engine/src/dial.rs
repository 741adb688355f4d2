//! The one dial of enchufe: how a client's link and a server's dialed
//! connection (a peer link) are opened.
//!
//! ```text
//!  dial(target, tls, connector, deadline)
//!    connector set?   -> connector.connect(target as written)      -> Boxed
//!    "unix:PATH"?     -> UnixStream::connect(PATH)                  -> Unix
//!    otherwise        -> resolve, TcpStream::connect each address
//!                        until one answers (TCP_NODELAY on)         -> Tcp
//!                        then, with `tls`, its client handshake     -> Secure
//!  all of it within one deadline
//! ```
//!
//! The TLS step is a [`Secure`] passed in rather than a TLS type named
//! here: the roles turn TLS on with their own `tls` feature, and a role
//! built without it passes [`NoTls`], so this crate compiles the same
//! whatever features its callers unify on. What the roles do with the
//! stream (a hello exchange, a permit) and how they name the errors
//! (`client::Error`, `server::Error`) stays theirs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::net::{BoxIo, Connect};

/// How an address names a Unix domain socket instead of `HOST:PORT`:
/// `unix:/run/app.sock`. `Client::connect_with`, `MultiClient::add`,
/// `ServerHandle::connect` and a peer's `connect` take such addresses.
pub const UNIX_PREFIX: &str = "unix:";

/// The client's side of a handshake run on a dialed TCP stream (TLS).
pub trait Secure: Sync {
    /// The stream after the handshake.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Why a handshake failed.
    type Error;
    /// Runs the handshake with the server dialed as `addr`, within `left`.
    fn secure(
        &self,
        addr: &str,
        tcp: TcpStream,
        left: Duration,
    ) -> impl Future<Output = Result<Self::Stream, Self::Error>> + Send;
}

#[cfg(feature = "tls")]
impl Secure for enchufe_transports::tls::Connector {
    type Stream = enchufe_transports::tls::ClientStream<TcpStream>;
    type Error = enchufe_transports::tls::Error;
    fn secure(
        &self,
        addr: &str,
        tcp: TcpStream,
        left: Duration,
    ) -> impl Future<Output = Result<Self::Stream, Self::Error>> + Send {
        self.connect(addr, tcp, left)
    }
}

/// No handshake: what a role built without TLS passes (as `None`).
#[derive(Debug)]
pub enum NoTls {}

impl Secure for NoTls {
    type Stream = TcpStream;
    type Error = std::convert::Infallible;
    async fn secure(&self, _: &str, _: TcpStream, _: Duration) -> Result<TcpStream, Self::Error> {
        match *self {}
    }
}

/// A dialed stream, typed where the transport is known so that the TCP
/// path is not boxed.
#[derive(Debug)]
pub enum Io<S> {
    /// Plain TCP, `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A Unix domain socket.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    /// TCP after the [`Secure`] handshake.
    Secure(S),
    /// What a [`Connect`] opened.
    Boxed(BoxIo),
}

/// A dialed connection and its addresses (`None` where the transport has
/// none: a Unix socket, a connector that cannot tell).
#[derive(Debug)]
pub struct Dialed<S> {
    /// The stream.
    pub io: Io<S>,
    /// The other end's address.
    pub peer_addr: Option<SocketAddr>,
    /// This end's address.
    pub local_addr: Option<SocketAddr>,
}

/// Why a dial failed. Each role names these in its own error type.
#[derive(Debug)]
pub enum Error<E> {
    /// The name did not resolve, or to no address.
    Resolve(io::Error),
    /// Refused at this address (by TCP, or by a connector whose target is
    /// an IP address).
    Refused {
        /// The address that refused.
        addr: SocketAddr,
        /// The error as reported.
        source: io::Error,
    },
    /// Every resolved address failed; the last one's error.
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The connector failed (other than a refusal at an IP address).
    Via(io::Error),
    /// The Unix socket could not be connected.
    Unix {
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The [`Secure`] handshake failed.
    Secure(E),
    /// The deadline passed first.
    Timeout,
}

/// Opens one connection to `target` by `connector` if given, else as
/// `unix:PATH` or TCP, then (TCP only) runs `tls`'s handshake: all of it
/// before `deadline`.
///
/// # Errors
/// See [`Error`].
pub async fn dial<T: Secure>(
    target: &str,
    tls: Option<&T>,
    connector: Option<&dyn Connect>,
    deadline: Instant,
) -> Result<Dialed<T::Stream>, Error<T::Error>> {
    if let Some(connector) = connector {
        let connected = within(deadline, connector.connect(target))
            .await?
            .map_err(|source| match target.parse::<SocketAddr>() {
                Ok(addr) if source.kind() == io::ErrorKind::ConnectionRefused => {
                    Error::Refused { addr, source }
                }
                _ => Error::Via(source),
            })?;
        return Ok(Dialed {
            io: Io::Boxed(connected.io),
            peer_addr: connected.peer_addr,
            local_addr: connected.local_addr,
        });
    }
    #[cfg(unix)]
    if let Some(path) = target.strip_prefix(UNIX_PREFIX) {
        let path = std::path::Path::new(path);
        let stream = within(deadline, tokio::net::UnixStream::connect(path))
            .await?
            .map_err(|source| Error::Unix {
                path: path.to_owned(),
                source,
            })?;
        return Ok(Dialed {
            io: Io::Unix(stream),
            peer_addr: None,
            local_addr: None,
        });
    }
    let stream = within(deadline, tcp(target)).await??;
    // Requests are small and latency-bound; batching is the driver's.
    let _ = stream.set_nodelay(true);
    let (peer_addr, local_addr) = (stream.peer_addr().ok(), stream.local_addr().ok());
    let io = match tls {
        Some(tls) => {
            let left = deadline.saturating_duration_since(Instant::now());
            Io::Secure(
                tls.secure(target, stream, left)
                    .await
                    .map_err(Error::Secure)?,
            )
        }
        None => Io::Tcp(stream),
    };
    Ok(Dialed {
        io,
        peer_addr,
        local_addr,
    })
}

/// Resolves `target` and connects to each address in turn until one
/// answers.
async fn tcp<E>(target: &str) -> Result<TcpStream, Error<E>> {
    let addrs = tokio::net::lookup_host(target)
        .await
        .map_err(Error::Resolve)?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(source) if source.kind() == io::ErrorKind::ConnectionRefused => {
                last = Some(Error::Refused { addr, source });
            }
            Err(source) => last = Some(Error::Connect { addr, source }),
        }
    }
    Err(last
        .unwrap_or_else(|| Error::Resolve(io::Error::new(io::ErrorKind::NotFound, "no addresses"))))
}

async fn within<F: Future, E>(deadline: Instant, f: F) -> Result<F::Output, Error<E>> {
    tokio::time::timeout_at(deadline, f)
        .await
        .map_err(|_| Error::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn dial_plain(
        target: &str,
        after: Duration,
    ) -> Result<Dialed<TcpStream>, Error<std::convert::Infallible>> {
        dial::<NoTls>(target, None, None, Instant::now() + after).await
    }

    #[tokio::test]
    async fn tcp_is_dialed_with_nodelay_and_both_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dialed = dial_plain(&addr.to_string(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(dialed.peer_addr, Some(addr));
        assert!(dialed.local_addr.is_some());
        match dialed.io {
            Io::Tcp(stream) => assert!(stream.nodelay().unwrap()),
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_with_its_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = dial_plain(&addr.to_string(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Refused { addr: a, .. } if a == addr),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connector_that_never_answers_times_out_at_the_deadline() {
        #[derive(Debug)]
        struct Never;
        impl Connect for Never {
            fn connect<'a>(
                &'a self,
                _: &'a str,
            ) -> crate::net::BoxFuture<'a, io::Result<crate::net::Connected>> {
                Box::pin(std::future::pending())
            }
        }
        let started = Instant::now();
        let err = dial::<NoTls>("x:1", None, Some(&Never), started + Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_unix_address_dials_the_socket_and_names_a_missing_path() {
        let dir = std::env::temp_dir().join(format!("enchufe-dial-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let err = dial_plain(&format!("unix:{}", dir.display()), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Unix { path, .. } if *path == dir),
            "{err:?}"
        );
        let _listener = tokio::net::UnixListener::bind(&dir).unwrap();
        let dialed = dial_plain(&format!("unix:{}", dir.display()), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(dialed.io, Io::Unix(_)));
        let _ = std::fs::remove_file(&dir);
    }
}
