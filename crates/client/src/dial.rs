//! Opening a connection: resolving, dialing TCP or a Unix socket within
//! the connect timeout, TLS on top when configured, and what each
//! connection's driver is wired to.

use std::net::SocketAddr;

use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::Instant;

use crate::link::{Link, Wiring};
use crate::{Config, Error, Result};

/// How an address names a Unix domain socket instead of `HOST:PORT`:
/// `unix:/run/app.sock`. [`Client::connect`](crate::Client::connect), [`Client::connect_with`](crate::Client::connect_with) and
/// `MultiClient::add` take such addresses.
pub const UNIX_PREFIX: &str = "unix:";

/// Resolves `addr` (or takes the path of a `unix:PATH` address), connects
/// within `connect_timeout` and (multiplexed) exchanges hellos within the
/// same deadline: one connection attempt.
pub(crate) async fn dial(
    addr: impl ToSocketAddrs,
    shown: &str,
    config: &Config,
    wiring: &Wiring,
) -> Result<Link> {
    let deadline = Instant::now() + config.connect_timeout;
    if let Some(connector) = &config.connector {
        let connected = tokio::time::timeout_at(deadline, connector.connect(shown))
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: shown.to_owned(),
                after: config.connect_timeout,
            })?
            .map_err(|source| via_error(shown, source))?;
        let addrs = (connected.peer_addr, connected.local_addr);
        return Link::start(connected.io, config, addrs, deadline, wiring.clone()).await;
    }
    #[cfg(unix)]
    if let Some(path) = shown.strip_prefix(UNIX_PREFIX) {
        let path = std::path::Path::new(path);
        let stream = tokio::time::timeout_at(deadline, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: shown.to_owned(),
                after: config.connect_timeout,
            })?
            .map_err(|source| Error::ConnectUnix {
                path: path.to_owned(),
                source,
            })?;
        return Link::start(stream, config, (None, None), deadline, wiring.clone()).await;
    }
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
    let (stream, addrs) = tcp_parts(stream);
    #[cfg(feature = "tls")]
    if let Some(connector) = &config.tls {
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = connector
            .connect(shown, stream, left)
            .await
            .map_err(|source| Error::Tls {
                addr: shown.to_owned(),
                source,
            })?;
        return Link::start(stream, config, addrs, deadline, wiring.clone()).await;
    }
    Link::start(stream, config, addrs, deadline, wiring.clone()).await
}

pub(crate) fn tcp_parts(
    stream: TcpStream,
) -> (TcpStream, (Option<SocketAddr>, Option<SocketAddr>)) {
    // Requests are small and latency-bound; batching is done by the driver.
    let _ = stream.set_nodelay(true);
    let addrs = (stream.peer_addr().ok(), stream.local_addr().ok());
    (stream, addrs)
}

/// A connector's error: refused (with an IP address to name) or otherwise.
fn via_error(shown: &str, source: std::io::Error) -> Error {
    match shown.parse::<SocketAddr>() {
        Ok(addr) if source.kind() == std::io::ErrorKind::ConnectionRefused => {
            Error::Refused { addr }
        }
        _ => Error::ConnectVia {
            addr: shown.to_owned(),
            source,
        },
    }
}
