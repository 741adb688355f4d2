use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enchufe_framing::mux::ErrorCode;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a client operation failed.
///
/// Every way a connection can fail is its own variant, so a caller can react
/// (retry on [`Error::Refused`], report [`Error::ConnectTimeout`], ...).
/// Match on variants, not on message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be resolved to any socket address.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },

    /// Nothing listens there: the connection was refused.
    #[error("connection to {addr} refused (is the server running?)")]
    Refused {
        /// The address that refused.
        addr: SocketAddr,
    },

    /// The connection was not established within the connect timeout (in
    /// the multiplexed profile: or the server's hello did not arrive within
    /// it, as when the server speaks the plain profile).
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The address as given (for [`Client::handshake`](crate::Client::handshake),
        /// the peer's address; for
        /// [`Client::handshake_io`](crate::Client::handshake_io), `"<io>"`).
        addr: String,
        /// The timeout that passed.
        after: Duration,
    },

    /// Connecting failed for another reason (unreachable network, ...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Connecting to a Unix domain socket failed: no socket at that path,
    /// nobody listening on it (refused), or no permission.
    #[error("cannot connect to the Unix socket {path}: {source}")]
    ConnectUnix {
        /// The socket's path.
        path: std::path::PathBuf,
        /// The OS error (`NotFound`, `ConnectionRefused`, ...).
        #[source]
        source: io::Error,
    },

    /// A request got no reply within its timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),

    /// The server closed the connection (cleanly, between frames).
    #[error("connection closed by peer")]
    ClosedByPeer,

    /// This client closed its sending side ([`Client::close`](crate::Client::close))
    /// or its connection is gone; nothing more can be sent.
    #[error("connection is closed")]
    Closed,

    /// A frame over the limit: announced by the server (the connection ends),
    /// or a message we tried to send (nothing was sent).
    #[error("frame of {declared} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The announced or attempted payload length.
        declared: u64,
        /// The configured limit.
        limit: usize,
    },

    /// The server is not speaking length-prefixed frames: where a frame
    /// header should be it sent the start of another protocol (an HTTP
    /// server's `HTTP/1.1 400 ...`, an SSH banner, a TLS record, text), which
    /// read as a length is over the limit. The connection ends.
    /// [`Error::is_frame_too_large`] also answers for it.
    #[error(
        "the server is not speaking length-prefixed frames: it sent \"{}\", which looks like \
         {looks_like} (read as a frame header, {declared} bytes, over the limit of {limit})",
        .header.escape_ascii()
    )]
    NotFrames {
        /// What the bytes look like.
        looks_like: enchufe_framing::Foreign,
        /// The four bytes read where a frame header should have been.
        header: [u8; 4],
        /// Those bytes read as a big-endian length.
        declared: u64,
        /// The configured limit.
        limit: usize,
    },

    /// The server's stream ended inside a frame: it crashed or was cut off
    /// mid-message.
    #[error("connection ended inside a frame: got {received} of {expected} bytes")]
    UnexpectedEof {
        /// Bytes that frame needed, header included.
        expected: u64,
        /// Bytes that arrived.
        received: u64,
    },

    /// A message arrived but is not a valid value of the expected type
    /// (invalid UTF-8, JSON of another shape). The connection goes on.
    #[error("cannot decode message: {0}")]
    Decode(#[source] enchufe_framing::Error),

    /// A message could not be encoded; nothing was sent.
    #[error("cannot encode message: {0}")]
    Encode(#[source] enchufe_framing::Error),

    /// The connection failed at the socket level (reset, broken pipe, ...).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),

    /// Multiplexed profile: the server speaks another version of the
    /// protocol. Nothing was exchanged beyond the hellos; the connection is
    /// closed.
    #[error("protocol version mismatch: we speak {ours}, the server {theirs}")]
    VersionMismatch {
        /// Our version ([`enchufe_framing::mux::VERSION`]).
        ours: u8,
        /// The version in the server's hello.
        theirs: u8,
    },

    /// Multiplexed profile: the server's first frame is not an enchufe hello
    /// (it speaks the plain profile and answered our hello as a message, or
    /// another protocol altogether). The connection is closed.
    #[error("the server is not a multiplexed enchufe peer: its first frame is not a hello")]
    NotEnchufe,

    /// Multiplexed profile: the server broke the protocol (a frame shorter
    /// than the 9-byte header, of an unknown kind, or of a kind only a client
    /// sends). The client closes the connection; every pending request and
    /// every later call fails with this error.
    #[error("protocol violation by the server: {0}")]
    Protocol(&'static str),

    /// Multiplexed profile: the server answered this request with an error
    /// frame. Only this request failed; the connection goes on.
    #[error("the server failed the request ({code:?}): {message}")]
    Remote {
        /// Why, as the server's error code says ([`ErrorCode::Busy`] is worth
        /// a retry later; [`ErrorCode::Other`] is a code this version does
        /// not know).
        code: ErrorCode,
        /// The server's explanation (the handler's error text, say).
        message: String,
    },

    /// Reconnecting client: there is no connection right now (the server is
    /// down and the client is redialing), and the call could not wait for
    /// one: [`WhileDown::FailFast`](crate::WhileDown::FailFast), or
    /// [`WhileDown::Wait`](crate::WhileDown::Wait) ran out. Nothing was sent.
    #[error("not connected: the server is down and the client is reconnecting")]
    Disconnected,

    /// Reconnecting client: redialing used up
    /// [`Backoff::max_attempts`](crate::Backoff::max_attempts); the client
    /// has stopped and every call fails with this.
    #[error("gave up reconnecting to {addr} after {attempts} attempts: {last}")]
    GaveUp {
        /// The address as given.
        addr: String,
        /// Attempts made in the last outage.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Arc<Error>,
    },

    /// [`MultiClient`](crate::MultiClient): no server has this key.
    #[error("no server named {key}")]
    UnknownServer {
        /// The key, as its `Debug` shows it.
        key: String,
    },

    /// [`MultiClient::add`](crate::MultiClient::add): a server already has
    /// this key (remove it first).
    #[error("a server named {key} is already there")]
    DuplicateServer {
        /// The key, as its `Debug` shows it.
        key: String,
    },

    /// [`MultiClient`](crate::MultiClient): no server is connected, so there
    /// is none to route to.
    #[error("no server connected")]
    NoServer,
}

impl Error {
    /// Whether something took too long: a request's reply
    /// ([`Error::Timeout`]) or connecting ([`Error::ConnectTimeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_) | Error::ConnectTimeout { .. })
            || matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    /// Whether the connection is gone: closed by us or by the server, cut
    /// inside a frame, reset, down while reconnecting, or given up on.
    pub fn is_closed(&self) -> bool {
        match self {
            Error::Closed
            | Error::ClosedByPeer
            | Error::UnexpectedEof { .. }
            | Error::Disconnected
            | Error::GaveUp { .. } => true,
            Error::Io(e) => enchufe_framing::is_closed_io(e),
            _ => false,
        }
    }

    /// Whether a frame was over `max_frame_length` ([`Error::FrameTooLarge`]),
    /// ours to send or the server's.
    pub fn is_frame_too_large(&self) -> bool {
        matches!(self, Error::FrameTooLarge { .. } | Error::NotFrames { .. })
    }

    /// Whether the server is not speaking length-prefixed frames at all
    /// ([`Error::NotFrames`]): it looks like HTTP, SSH, TLS or text.
    pub fn is_not_frames(&self) -> bool {
        matches!(self, Error::NotFrames { .. })
    }

    /// Whether nothing could be reached to connect to: refused, unresolved,
    /// no socket at that path, no answer in time.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Error::Resolve { .. }
                | Error::Refused { .. }
                | Error::Connect { .. }
                | Error::ConnectUnix { .. }
                | Error::ConnectTimeout { .. }
        )
    }
}

impl From<enchufe_framing::Error> for Error {
    fn from(e: enchufe_framing::Error) -> Self {
        use enchufe_framing::Error as F;
        match e {
            F::Io(e) => Error::Io(e),
            F::FrameTooLarge { declared, limit } => Error::FrameTooLarge { declared, limit },
            F::NotFrames {
                looks_like,
                header,
                declared,
                limit,
            } => Error::NotFrames {
                looks_like,
                header,
                declared,
                limit,
            },
            F::UnexpectedEof { expected, received } => Error::UnexpectedEof { expected, received },
            F::Encode(_) => Error::Encode(e),
            F::BadHello => Error::NotEnchufe,
            F::VersionMismatch { ours, theirs } => Error::VersionMismatch { ours, theirs },
            F::Malformed(what) => Error::Protocol(what),
            other => Error::Decode(other),
        }
    }
}

/// How the connection ended, kept so every waiting request and every later
/// call gets the same answer. `io::Error` is not `Clone`, hence this copy.
#[derive(Debug, Clone)]
pub(crate) enum Terminal {
    PeerClosed,
    Local,
    FrameTooLarge {
        declared: u64,
        limit: usize,
    },
    UnexpectedEof {
        expected: u64,
        received: u64,
    },
    NotFrames(enchufe_framing::Foreign, [u8; 4], usize),
    Io(io::ErrorKind, String),
    /// The server broke the multiplexed protocol; the client hung up.
    Protocol(&'static str),
}

impl Terminal {
    pub(crate) fn from_error(e: &enchufe_framing::Error) -> Self {
        use enchufe_framing::Error as F;
        match e {
            F::FrameTooLarge { declared, limit } => Terminal::FrameTooLarge {
                declared: *declared,
                limit: *limit,
            },
            F::UnexpectedEof { expected, received } => Terminal::UnexpectedEof {
                expected: *expected,
                received: *received,
            },
            F::NotFrames {
                looks_like,
                header,
                limit,
                ..
            } => Terminal::NotFrames(*looks_like, *header, *limit),
            F::Io(e) => Terminal::Io(e.kind(), e.to_string()),
            F::Malformed(what) => Terminal::Protocol(what),
            other => Terminal::Io(io::ErrorKind::InvalidData, other.to_string()),
        }
    }

    pub(crate) fn to_error(&self) -> Error {
        match self {
            Terminal::PeerClosed => Error::ClosedByPeer,
            Terminal::Local => Error::Closed,
            Terminal::FrameTooLarge { declared, limit } => Error::FrameTooLarge {
                declared: *declared,
                limit: *limit,
            },
            Terminal::UnexpectedEof { expected, received } => Error::UnexpectedEof {
                expected: *expected,
                received: *received,
            },
            Terminal::NotFrames(looks_like, header, limit) => Error::NotFrames {
                looks_like: *looks_like,
                header: *header,
                declared: u64::from(u32::from_be_bytes(*header)),
                limit: *limit,
            },
            Terminal::Io(kind, msg) => Error::Io(io::Error::new(*kind, msg.clone())),
            Terminal::Protocol(what) => Error::Protocol(what),
        }
    }
}
