use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong sending or receiving datagrams.
///
/// Match on the variant, not on the message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`UdpServer::bind`](crate::UdpServer::bind): the socket could not be
    /// bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why the OS refused.
        #[source]
        source: io::Error,
    },

    /// [`UdpClient::connect`](crate::UdpClient::connect): the name did not
    /// resolve, or no local socket could be bound and connected to any of its
    /// addresses. (Connecting a UDP socket sends nothing: a server that is
    /// not there shows up later, as [`Error::Refused`] or [`Error::Timeout`].)
    #[error("cannot connect a UDP socket to {addr}: {source}")]
    Connect {
        /// The address as given.
        addr: String,
        /// The last error seen.
        #[source]
        source: io::Error,
    },

    /// Nothing listens at the server's address: the host answered a datagram
    /// with ICMP "port unreachable", which a connected socket reports as
    /// "connection refused" on Linux (and "connection reset" on Windows,
    /// the course's `WinError 10054`). Not retried: an answer is not coming.
    #[error("nothing is listening at {addr} (ICMP port unreachable)")]
    Refused {
        /// The server's address.
        addr: SocketAddr,
    },

    /// [`UdpClient::request`](crate::UdpClient::request) got no reply after
    /// every attempt (UDP loses datagrams; so does a server that is down on
    /// a host that does not answer with ICMP).
    #[error("no reply after {attempts} attempts of {each:?} each")]
    Timeout {
        /// Datagrams sent: 1 + `retries`.
        attempts: u32,
        /// How long each attempt waited.
        each: Duration,
    },

    /// A message to send is larger than `max_datagram`: nothing was sent.
    #[error("datagram of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The encoded message's length.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A datagram arrived that is larger than `max_datagram`. It was
    /// dropped whole, never handed on cut short (the receive buffer is one
    /// byte larger than the limit, so the OS's silent truncation shows).
    #[error("a datagram over the limit of {limit} bytes arrived and was dropped")]
    Truncated {
        /// The configured limit.
        limit: usize,
    },

    /// A datagram arrived but is not a valid message of the expected type
    /// (invalid UTF-8, JSON of another shape). The socket goes on.
    #[error("cannot decode datagram: {0}")]
    Decode(#[source] enchufe_framing::Error),

    /// A message could not be encoded; nothing was sent.
    #[error("cannot encode message: {0}")]
    Encode(#[source] enchufe_framing::Error),

    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// Whether a request got no reply in time ([`Error::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
            || matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    /// Whether nothing listens at the other end ([`Error::Refused`]).
    pub fn is_refused(&self) -> bool {
        matches!(self, Error::Refused { .. })
    }

    /// Whether a datagram was over `max_datagram`: ours to send
    /// ([`Error::TooLarge`]) or one that arrived ([`Error::Truncated`]).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::TooLarge { .. } | Error::Truncated { .. })
    }

    /// An I/O error on a socket connected to `peer`, with ICMP "port
    /// unreachable" (refused on Linux, reset on Windows) named as such.
    pub(crate) fn from_io(e: io::Error, peer: SocketAddr) -> Error {
        if is_unreachable(&e) {
            Error::Refused { addr: peer }
        } else {
            Error::Io(e)
        }
    }
}

/// Whether an I/O error on a UDP socket is an ICMP "port unreachable" from
/// an earlier datagram, which says nothing about the socket itself.
pub(crate) fn is_unreachable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_answer_without_knowing_the_variant() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let refused = Error::from_io(io::ErrorKind::ConnectionRefused.into(), addr);
        assert!(refused.is_refused() && !refused.is_timeout());
        let timeout = Error::Timeout {
            attempts: 4,
            each: Duration::from_secs(1),
        };
        assert!(timeout.is_timeout() && !timeout.is_too_large());
        assert!(Error::Truncated { limit: 8 }.is_too_large());
        assert!(Error::TooLarge { size: 9, limit: 8 }.is_too_large());
        let other = Error::from_io(io::ErrorKind::PermissionDenied.into(), addr);
        assert!(matches!(other, Error::Io(_)) && !other.is_refused());
    }
}
