use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::AddrError;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong sending or receiving datagrams.
///
/// Match on the variant, not on the message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`UdpServer::bind`](crate::UdpServer::bind): the socket could not be
    /// bound; holds the address asked for, and why the OS refused.
    #[error("cannot bind {0}")]
    Bind(#[source] AddrError),

    /// [`UdpClient::connect`](crate::UdpClient::connect): the name did not
    /// resolve, or no local socket could be bound and connected to any of its
    /// addresses. (Connecting a UDP socket sends nothing: a server that is
    /// not there shows up later, as [`Error::Refused`] or [`Error::Timeout`].)
    /// Holds the address as given and the last error seen.
    #[error("cannot connect a UDP socket to {0}")]
    Connect(#[source] AddrError),

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
    /// (A datagram is UDP's frame: the name is the one every enchufe error
    /// answers to.)
    pub fn is_frame_too_large(&self) -> bool {
        matches!(self, Error::TooLarge { .. } | Error::Truncated { .. })
    }

    /// [`Error::is_frame_too_large`], by its former name.
    #[deprecated(note = "use `is_frame_too_large`, the name every enchufe error answers to")]
    pub fn is_too_large(&self) -> bool {
        self.is_frame_too_large()
    }

    /// Whether the socket failed as a closed connection does (UDP has no
    /// connection to close: only an I/O error that says so).
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Io(e) if enchufe_framing::is_closed_io(e))
    }

    /// Whether the socket reported a reset. On a connected UDP socket the
    /// reset of an ICMP "port unreachable" is [`Error::Refused`] instead
    /// ([`Error::is_refused`]), so this is only another socket failure.
    pub fn is_reset(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }

    /// Always `false`: UDP has no profiles. There so that every enchufe
    /// error answers the same questions.
    pub fn is_profile_mismatch(&self) -> bool {
        false
    }

    /// Whether what arrived could not be taken: a datagram over the limit
    /// ([`Error::Truncated`]) or one that does not decode
    /// ([`Error::Decode`]).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Truncated { .. } | Error::Decode(_))
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
        assert!(timeout.is_timeout() && !timeout.is_frame_too_large());
        assert!(Error::Truncated { limit: 8 }.is_frame_too_large());
        assert!(Error::TooLarge { size: 9, limit: 8 }.is_frame_too_large());
        let other = Error::from_io(io::ErrorKind::PermissionDenied.into(), addr);
        assert!(matches!(other, Error::Io(_)) && !other.is_refused());
    }

    #[test]
    fn the_predicate_set_of_every_enchufe_error_answers_here() {
        let cases = [
            (
                Error::Timeout {
                    attempts: 1,
                    each: Duration::from_secs(1),
                },
                [true, false, false, false, false, false, false],
            ),
            (
                Error::Io(io::ErrorKind::BrokenPipe.into()),
                [false, true, false, false, false, false, false],
            ),
            (
                Error::Io(io::ErrorKind::ConnectionReset.into()),
                [false, true, true, false, false, false, false],
            ),
            (
                Error::TooLarge { size: 9, limit: 8 },
                [false, false, false, true, false, false, false],
            ),
            (
                Error::Truncated { limit: 8 },
                [false, false, false, true, false, true, false],
            ),
            (
                Error::Decode(enchufe_framing::Error::InvalidUtf8 { valid_up_to: 0 }),
                [false, false, false, false, false, true, false],
            ),
            (
                Error::Refused {
                    addr: "127.0.0.1:9".parse().unwrap(),
                },
                [false, false, false, false, false, false, true],
            ),
        ];
        enchufe_framing::assert_predicates!(&cases, is_refused);
    }
}
