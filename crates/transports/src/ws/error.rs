//! What goes wrong on a WebSocket listener.

use std::io;
use std::time::Duration;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong on a WebSocket listener: an HTTP request that did not
/// become a WebSocket (answered with an HTTP error status when the socket
/// still works), or a WebSocket this end closed for bad input (with a
/// close frame whose code [`Error::close_code`] gives; [`WsIo`](super::stream::WsIo)'s reads
/// fail with an `io::Error` carrying it). Either closes the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request head did not arrive within the deadline.
    #[error("no complete HTTP request within {0:?}")]
    Timeout(Duration),

    /// The request head is longer than [`Options::max_request_bytes`](super::options::Options::max_request_bytes)
    /// (answered `431`).
    #[error("HTTP request head over {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },

    /// Not a valid WebSocket upgrade (answered `400`), or not HTTP at all.
    #[error("bad upgrade request: {0}")]
    BadRequest(String),

    /// The upgrade's `Origin` is not in [`Options::allowed_origins`](super::options::Options::allowed_origins)
    /// (answered `403`): a page from another site tried to connect.
    #[error("origin {0:?} not allowed")]
    Forbidden(String),

    /// A plain GET for a path with no page (answered `404`), or for the
    /// page when none is configured.
    #[error("no page at {0}")]
    NotFound(String),

    /// The socket failed or closed during the upgrade.
    #[error("i/o error during the upgrade: {0}")]
    Io(#[from] io::Error),

    /// The peer broke RFC 6455 ([`Violation`] says how). Closed with code
    /// 1002.
    #[error("WebSocket protocol error: {0}")]
    Protocol(Violation),

    /// A text message (or a close frame's reason) that is not UTF-8.
    /// Closed with code 1007.
    #[error("WebSocket text message is not UTF-8")]
    InvalidUtf8,

    /// A message whose first frame arrived was not complete within
    /// [`Options::message_timeout`](super::options::Options::message_timeout). Closed with code 1008.
    #[error("WebSocket message not completed within {0:?}")]
    MessageTimeout(Duration),
}

impl Error {
    /// Whether a deadline passed: the request head's or a message's.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_) | Error::MessageTimeout(_))
    }

    /// Whether the socket closed or failed under the upgrade.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Io(_))
    }

    /// Whether the other end reset the connection (`ECONNRESET`) during the
    /// upgrade.
    pub fn is_reset(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }

    /// Whether what the other end sent was refused: a request head over the
    /// limit, not an upgrade, from an origin not allowed, broken RFC 6455,
    /// text that is not UTF-8, or too slow (a head or a message not done in
    /// time). A page that does not exist is not bad input.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::TooLarge { .. }
                | Error::BadRequest(_)
                | Error::Forbidden(_)
                | Error::Protocol(_)
                | Error::InvalidUtf8
                | Error::Timeout(_)
                | Error::MessageTimeout(_)
        )
    }

    /// The close code (RFC 6455 §7.4.1) the connection was closed with,
    /// for the errors of an open WebSocket. A message over the limit is
    /// closed with 1009 and reported by the framing layer as an oversize
    /// frame; a server shutting down sends 1001.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Protocol(_) => Some(code::PROTOCOL),
            Error::InvalidUtf8 => Some(code::INVALID_DATA),
            Error::MessageTimeout(_) => Some(code::POLICY),
            _ => None,
        }
    }
}

/// How the peer broke RFC 6455, for [`Error::Protocol`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// An opcode RFC 6455 reserves.
    #[error("reserved opcode")]
    ReservedOpcode,
    /// A client's frame without a mask.
    #[error("unmasked frame from a client")]
    Unmasked,
    /// One of the reserved bits set (no extension was agreed).
    #[error("reserved bit set")]
    ReservedBit,
    /// A control frame fragmented or over 125 bytes.
    #[error("fragmented or long control frame")]
    BadControl,
    /// A continuation with no message started, or a new message before the
    /// last one ended.
    #[error("fragments out of order")]
    FragmentOrder,
    /// A close frame whose payload is one byte (a code takes two).
    #[error("close frame of one byte")]
    ShortClose,
    /// A close code RFC 6455 does not allow on the wire.
    #[error("close code not allowed")]
    CloseCode,
}

/// Close codes (RFC 6455 §7.4.1) this end sends.
pub(super) mod code {
    pub(in crate::ws) const GOING_AWAY: u16 = 1001;
    pub(in crate::ws) const PROTOCOL: u16 = 1002;
    pub(in crate::ws) const INVALID_DATA: u16 = 1007;
    pub(in crate::ws) const POLICY: u16 = 1008;
    pub(in crate::ws) const TOO_BIG: u16 = 1009;
}
