use std::io;
use std::time::Duration;

use crate::AddrError;

/// What a connection does not support: [`Error::Unsupported`]'s reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsupported {
    /// A request to the other end, on a connection that is not between two
    /// peers ([`Connection::request`](crate::Connection::request)).
    RequestsNeedPeers,
    /// A push before the connection's first frame decided its profile
    /// ([`Profile::Auto`](crate::Profile::Auto)).
    PushBeforeProfile,
    /// A streamed frame on a connection that does not take them (a
    /// multiplexed one).
    StreamHere,
    /// A dialed connection's other end is not a peer.
    NotAPeer,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsupported::RequestsNeedPeers => {
                "requests to the other end need a connection between two peers"
            }
            Unsupported::PushBeforeProfile => {
                "a push before the connection's first frame decided its profile"
            }
            Unsupported::StreamHere => "a streamed frame on a connection that does not take them",
            Unsupported::NotAPeer => "the other end is not a peer",
        })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the server or on one of its connections.
///
/// Match on the variant, not on the message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be bound: the address asked for, and
    /// why the OS refused.
    #[error("cannot bind {0}")]
    Bind(#[source] AddrError),

    /// Dialing out ([`ServerHandle::connect`](crate::ServerHandle::connect))
    /// failed: the address dialed, and why (refused, unreachable, or no
    /// answer within the handshake timeout).
    #[error("cannot connect to {0}")]
    Connect(#[source] AddrError),

    /// A dialed connection's TLS handshake failed
    /// ([`Server::dial_tls`](crate::Server::dial_tls)): the other end's
    /// certificate is not trusted or names another host, it does not speak
    /// TLS, or it took longer than the handshake timeout. Holds the address
    /// dialed and the TLS error.
    #[cfg(feature = "tls")]
    #[error("TLS failed with {0}")]
    Tls(#[source] AddrError<crate::tls::Error>),

    /// The other end did not complete the hello exchange within the
    /// handshake timeout.
    #[error("no hello within {0:?}")]
    HandshakeTimeout(Duration),

    /// Plain profile: no complete first frame within
    /// [`Config::first_frame_timeout`](crate::Config::first_frame_timeout).
    #[error("no complete first frame within {0:?} of connecting (first_frame_timeout)")]
    FirstFrameTimeout(Duration),

    /// A frame began arriving and was not complete within
    /// [`Config::frame_timeout`](crate::Config::frame_timeout).
    #[error("a frame began arriving but was not complete within {0:?} (frame_timeout)")]
    FrameTimeout(Duration),

    /// A handler ran past [`Config::handler_timeout`](crate::Config::handler_timeout)
    /// and was dropped.
    #[error("the handler ran past {0:?} and was stopped (handler_timeout)")]
    HandlerTimeout(Duration),

    /// [`Connection::request`](crate::Connection::request) got no reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),

    /// The other end answered a request with an error frame.
    #[error("remote error ({code:?}): {message}")]
    Remote {
        /// Why, as the protocol says it.
        code: enchufe_framing::mux::ErrorCode,
        /// The other end's message.
        message: String,
    },

    /// The operation needs what this connection does not speak;
    /// [`Unsupported`] says what.
    #[error("not supported on this connection: {0}")]
    Unsupported(Unsupported),

    /// Every connection permit is taken ([`Config::max_connections`](crate::Config::max_connections)).
    #[error("connection limit reached")]
    TooManyConnections,

    /// Socket-level failure outside a framed stream.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),

    /// A framing or message error on a connection: an oversize frame, EOF
    /// inside a frame, a request that does not decode, a reply that does not
    /// encode. Match the inner [`enchufe_framing::Error`] for details.
    #[error(transparent)]
    Framing(#[from] enchufe_framing::Error),

    /// The handler returned an error. In the plain profile there is no way to
    /// send it to the client, so the connection is closed. The handler's
    /// error is kept as it was returned ([`HandlerError::take`]).
    #[error("handler failed: {0}")]
    Handler(#[source] HandlerError),

    /// The handler panicked. The panic costs that connection, never the server.
    #[error("handler panicked: {0}")]
    HandlerPanic(String),

    /// The client did not take our frames: the outbound queue stayed full, or a
    /// write made no progress, for longer than the write timeout.
    #[error("client stopped reading: no write progress for {0:?}")]
    WriteStalled(Duration),

    /// The outbound queue is full right now (from `try_push`).
    #[error("outbound queue is full")]
    QueueFull,

    /// The connection is closed; nothing more can be sent on it.
    #[error("connection is closed")]
    Closed,
}

/// A handler's error, kept as the handler returned it: its text (what
/// [`Display`](std::fmt::Display) shows) and the value itself, for a caller
/// that knows its type ([`HandlerError::is`], [`HandlerError::take`]).
///
/// ```
/// use enchufe::server::HandlerError;
/// #[derive(Debug, PartialEq)]
/// struct NoSuchUser(u32);
/// impl std::fmt::Display for NoSuchUser {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "no user {}", self.0)
///     }
/// }
/// let e = HandlerError::new(NoSuchUser(7));
/// assert_eq!(e.to_string(), "no user 7");
/// assert!(e.is::<NoSuchUser>());
/// assert_eq!(e.take::<NoSuchUser>(), Some(NoSuchUser(7)));
/// ```
pub struct HandlerError {
    /// The error's text, taken once: what logs and `Display` show, also
    /// after the value was taken.
    text: String,
    /// The value. A handler's error need only be `Display + Send`; the
    /// lock makes this error `Sync` as every enchufe error is.
    value: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl HandlerError {
    /// Keeps `error`, a handler's error.
    pub fn new<E: std::fmt::Display + Send + 'static>(error: E) -> HandlerError {
        HandlerError {
            text: error.to_string(),
            value: std::sync::Mutex::new(Some(Box::new(error))),
        }
    }

    /// Whether the handler's error is an `E` (and was not taken yet).
    pub fn is<E: 'static>(&self) -> bool {
        self.value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|value| value.is::<E>())
    }

    /// Takes the handler's error out, if it is an `E`; `None` if it is of
    /// another type or was taken already. The text stays.
    pub fn take<E: 'static>(&self) -> Option<E> {
        let mut value = self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match value.take()?.downcast::<E>() {
            Ok(taken) => Some(*taken),
            Err(other) => {
                *value = Some(other);
                None
            }
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HandlerError").field(&self.text).finish()
    }
}

impl std::error::Error for HandlerError {}

impl Error {
    /// Whether something took too long: a peer request's reply, the hello
    /// exchange, or a client that stopped reading ([`Error::WriteStalled`]).
    pub fn is_timeout(&self) -> bool {
        self.is_slow_sender()
            || matches!(
                self,
                Error::Timeout(_) | Error::HandlerTimeout(_) | Error::WriteStalled(_)
            )
            || matches!(self, Error::Framing(e) if e.is_timeout())
    }

    /// Whether the connection is gone (closed, reset, cut inside a frame).
    pub fn is_closed(&self) -> bool {
        match self {
            Error::Closed => true,
            Error::Framing(e) => e.is_closed(),
            Error::Io(e) => enchufe_framing::is_closed_io(e),
            _ => false,
        }
    }

    /// Whether the connection was reset (`ECONNRESET`) rather than closed:
    /// the other end ended it on a failure.
    pub fn is_reset(&self) -> bool {
        match self {
            Error::Io(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Error::Framing(e) => e.is_reset(),
            _ => false,
        }
    }

    /// Whether the other end refused a request for load ([`Error::Remote`]
    /// with `ErrorCode::Busy`): it did not run, and a retry later may
    /// succeed.
    pub fn is_busy(&self) -> bool {
        self.code() == Some(enchufe_framing::mux::ErrorCode::Busy)
    }

    /// The other end's error code, when it failed a request
    /// ([`Error::Remote`]); `None` for every other failure.
    pub fn code(&self) -> Option<enchufe_framing::mux::ErrorCode> {
        match self {
            Error::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a TLS handshake failed (`Error::Tls`; always `false`
    /// without the `tls` feature).
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Error::Tls(_) = self {
            return true;
        }
        false
    }

    /// Whether a frame was over `max_frame_length`, the client's or ours.
    pub fn is_frame_too_large(&self) -> bool {
        matches!(self, Error::Framing(e) if e.is_frame_too_large())
    }

    /// Whether the other end speaks the other profile
    /// ([`enchufe_framing::Error::ProfileMismatch`]): a multiplexed client
    /// at a server pinned to the plain profile, say.
    pub fn is_profile_mismatch(&self) -> bool {
        matches!(self, Error::Framing(e) if e.is_profile_mismatch())
    }

    /// Whether a connection that ends with this error is reset (RST) rather
    /// than closed, so its client can tell a failure from a goodbye: true
    /// for every error but a disagreement on the protocol, a profile
    /// mismatch or a multiplexed version mismatch
    /// ([`enchufe_framing::Error::VersionMismatch`]). Those close cleanly:
    /// the client must read what was answered (our hello, for one of
    /// another version) or the clean close that says "not this profile" (a
    /// server pinned to plain), which a reset would destroy or turn into a
    /// vaguer "reset by peer".
    pub fn ends_with_reset(&self) -> bool {
        !(self.is_profile_mismatch()
            || matches!(
                self,
                Error::Framing(enchufe_framing::Error::VersionMismatch { .. })
            ))
    }

    /// Whether the client is not speaking length-prefixed frames at all: it
    /// sent what looks like HTTP, SSH, TLS or text
    /// ([`enchufe_framing::Error::NotFrames`]).
    pub fn is_not_frames(&self) -> bool {
        matches!(self, Error::Framing(e) if e.is_not_frames())
    }

    /// Whether the other end caused it: what it sent broke the framing or
    /// the protocol, it reset or cut the connection, or it was too slow to
    /// send its hello, first frame or a whole frame. (Not: a handler's
    /// error, panic or timeout, a stalled writer, a refused dial.) Such
    /// closes are counted and their warnings thinned, so bad input cannot
    /// flood the log.
    pub fn is_bad_input(&self) -> bool {
        self.is_slow_sender() || matches!(self, Error::Framing(_) | Error::Io(_))
    }

    /// The other end was too slow to send its hello, its first frame or a
    /// whole frame: a timeout, and bad input.
    fn is_slow_sender(&self) -> bool {
        matches!(
            self,
            Error::HandshakeTimeout(_) | Error::FirstFrameTimeout(_) | Error::FrameTimeout(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, HandlerError};
    use enchufe_framing::mux::Mismatch;
    use enchufe_framing::Error as Framing;

    #[test]
    fn the_predicate_set_of_every_enchufe_error_answers_here() {
        use std::io;
        use std::time::Duration;
        let cases = [
            (
                Error::FrameTimeout(Duration::from_secs(1)),
                [true, false, false, false, false, true, false],
            ),
            (
                Error::Timeout(Duration::from_secs(1)),
                [true, false, false, false, false, false, false],
            ),
            (
                Error::Closed,
                [false, true, false, false, false, false, false],
            ),
            (
                Error::Io(io::ErrorKind::ConnectionReset.into()),
                [false, true, true, false, false, true, false],
            ),
            (
                Error::Framing(Framing::Io(io::ErrorKind::ConnectionReset.into())),
                [false, true, true, false, false, true, false],
            ),
            (
                Error::Framing(Framing::FrameTooLarge {
                    declared: 9,
                    limit: 8,
                }),
                [false, false, false, true, false, true, false],
            ),
            (
                Error::Framing(Framing::ProfileMismatch(Mismatch::GotHello)),
                [false, false, false, false, true, true, false],
            ),
            (
                Error::Remote {
                    code: enchufe_framing::mux::ErrorCode::Busy,
                    message: "full".into(),
                },
                [false, false, false, false, false, false, true],
            ),
            (
                Error::HandlerPanic("bug".into()),
                [false, false, false, false, false, false, false],
            ),
        ];
        enchufe_framing::assert_predicates!(&cases, is_busy);
    }

    #[test]
    fn a_handlers_error_keeps_its_value_and_its_text() {
        let e = Error::Handler(HandlerError::new(std::io::Error::other("disk")));
        assert_eq!(e.to_string(), "handler failed: disk");
        let Error::Handler(inner) = &e else {
            unreachable!()
        };
        assert!(inner.is::<std::io::Error>() && !inner.is::<String>());
        assert_eq!(inner.take::<String>(), None);
        let taken = inner.take::<std::io::Error>().expect("the value");
        assert_eq!(taken.to_string(), "disk");
        assert_eq!(inner.take::<std::io::Error>().map(|_| ()), None);
        // The source chain reaches it, and the text stays.
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "disk");
    }

    #[test]
    fn only_a_protocol_disagreement_ends_without_a_reset() {
        let clean = [
            Error::Framing(Framing::ProfileMismatch(Mismatch::GotHello)),
            Error::Framing(Framing::VersionMismatch { ours: 1, theirs: 2 }),
        ];
        for e in &clean {
            assert!(!e.ends_with_reset(), "{e:?}");
        }
        let reset = [
            Error::Handler(HandlerError::new("no")),
            Error::HandlerPanic("bug".into()),
            Error::Framing(Framing::BadHello),
            Error::FrameTimeout(std::time::Duration::from_secs(1)),
            Error::WriteStalled(std::time::Duration::from_secs(1)),
        ];
        for e in &reset {
            assert!(e.ends_with_reset(), "{e:?}");
        }
    }
}
