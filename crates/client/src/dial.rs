//! Opening a client's connection: the engine's one dial (connector, Unix
//! socket or TCP, then TLS when configured) within the connect timeout,
//! then the link on top, and the engine's dial errors named as the
//! client's.

use std::net::SocketAddr;

use enchufe_engine::dial::{self as engine, Io};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::link::{Link, Wiring};
use crate::{Config, Error, Result};

pub use enchufe_engine::dial::UNIX_PREFIX;

/// Dials `addr` (`HOST:PORT`, or `unix:PATH`) within `connect_timeout` and
/// (multiplexed) exchanges hellos within the same deadline: one connection
/// attempt.
pub(crate) async fn dial(addr: &str, config: &Config, wiring: &Wiring) -> Result<Link> {
    let deadline = Instant::now() + config.connect_timeout;
    #[cfg(feature = "tls")]
    let tls = config.tls.as_ref();
    #[cfg(not(feature = "tls"))]
    let tls: Option<&engine::NoTls> = None;
    let dialed = engine::dial(addr, tls, config.connector.as_deref(), deadline)
        .await
        .map_err(|e| dial_error(addr, config, e))?;
    let addrs = (dialed.peer_addr, dialed.local_addr);
    let wiring = wiring.clone();
    match dialed.io {
        Io::Tcp(stream) => Link::start(stream, config, addrs, deadline, wiring).await,
        #[cfg(unix)]
        Io::Unix(stream) => Link::start(stream, config, addrs, deadline, wiring).await,
        Io::Secure(stream) => Link::start(stream, config, addrs, deadline, wiring).await,
        Io::Boxed(io) => Link::start(io, config, addrs, deadline, wiring).await,
    }
}

/// The client's name for each way a dial fails.
#[cfg(feature = "tls")]
type DialError = engine::Error<enchufe_transports::tls::Error>;
#[cfg(not(feature = "tls"))]
type DialError = engine::Error<std::convert::Infallible>;

fn dial_error(addr: &str, config: &Config, e: DialError) -> Error {
    let shown = || addr.to_owned();
    match e {
        engine::Error::Resolve(source) => Error::Resolve {
            addr: shown(),
            source,
        },
        engine::Error::Refused { addr, .. } => Error::Refused { addr },
        engine::Error::Connect { addr, source } => Error::Connect { addr, source },
        engine::Error::Via(source) => Error::ConnectVia {
            addr: shown(),
            source,
        },
        engine::Error::Unix { path, source } => Error::ConnectUnix { path, source },
        #[cfg(feature = "tls")]
        engine::Error::Secure(source) => Error::Tls {
            addr: shown(),
            source,
        },
        #[cfg(not(feature = "tls"))]
        engine::Error::Secure(never) => match never {},
        engine::Error::Timeout => Error::ConnectTimeout {
            addr: shown(),
            after: config.connect_timeout,
        },
    }
}

pub(crate) fn tcp_parts(
    stream: TcpStream,
) -> (TcpStream, (Option<SocketAddr>, Option<SocketAddr>)) {
    // Requests are small and latency-bound; batching is done by the driver.
    let _ = stream.set_nodelay(true);
    let addrs = (stream.peer_addr().ok(), stream.local_addr().ok());
    (stream, addrs)
}
