use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enchufe_framing::mux::ErrorCode;

/// What a client's connection does not support: [`Error::Unsupported`]'s
/// reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsupported {
    /// A streamed message ([`Client::send_stream`](crate::Client::send_stream))
    /// in the multiplexed profile, where large data goes as many messages
    /// so that other requests are not held up.
    StreamsInMultiplexed,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsupported::StreamsInMultiplexed => "streamed messages are a plain-profile feature",
        })
    }
}

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

    /// The connection was not established within the connect timeout. (A
    /// server's hello that does not arrive in time is a profile mismatch,
    /// `Mismatch::NoHello`: see [`Error::is_profile_mismatch`].)
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

    /// Connecting through [`Config::connector`](crate::Config::connector)
    /// failed: the connector's own error (refused, unreachable, no such
    /// host in a simulated network...).
    #[error("cannot connect to {addr}: {source}")]
    ConnectVia {
        /// The address as given.
        addr: String,
        /// The connector's error.
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

    /// The TLS handshake failed ([`Config::tls`](crate::Config::tls)): the
    /// server's certificate is not signed by a CA we trust
    /// ([`tls::Error::is_unknown_issuer`](crate::tls::Error::is_unknown_issuer))
    /// or names another host
    /// ([`tls::Error::is_wrong_name`](crate::tls::Error::is_wrong_name)),
    /// the server does not speak TLS (it closed, or answered with plain
    /// frames), or no handshake within the connect timeout. Nothing was
    /// sent; the connection is closed.
    #[cfg(feature = "tls")]
    #[error("TLS with {addr} failed: {source}")]
    Tls {
        /// The address as given.
        addr: String,
        /// What went wrong.
        #[source]
        source: crate::tls::Error,
    },

    /// A request got no reply within its timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),

    /// Nothing at all arrived from the server for
    /// [`Config::silence_timeout`](crate::Config::silence_timeout) while a
    /// reply was awaited: the connection was taken for dead (a cut cable, a
    /// partition, a frozen host: cases where no FIN or RST ever comes) and
    /// dropped. A reconnecting client redials.
    #[error("the server went silent while replies were awaited; connection dropped")]
    Silent,

    /// The server closed the connection (cleanly, between frames).
    #[error("connection closed by peer")]
    ClosedByPeer,

    /// The server reset the connection: an enchufe server does that when
    /// it ends a connection on an error (in the plain profile: its handler
    /// failed or panicked, its reply could not be sent, or it took what we
    /// sent for bad input), so this is a failure, where
    /// [`Error::ClosedByPeer`] is a goodbye. A reset can also come from the
    /// network or the server's host (a process killed, a firewall). Replies
    /// that arrived before it were delivered. The framing error (an
    /// `ECONNRESET`) is the source.
    #[error("connection reset by the server: it ended the connection on an error")]
    ResetByPeer(#[source] std::sync::Arc<enchufe_framing::Error>),

    /// This client closed its sending side ([`Client::close`](crate::Client::close))
    /// or its connection is gone; nothing more can be sent.
    #[error("connection is closed")]
    Closed,

    /// This call cannot be made on this connection; [`Unsupported`] says
    /// why. Nothing was sent.
    #[error("not supported: {0}")]
    Unsupported(Unsupported),

    /// A message arrived but is not a valid value of the expected type
    /// (invalid UTF-8, JSON of another shape). The connection goes on.
    #[error("cannot decode message: {0}")]
    Decode(#[source] enchufe_framing::Error),

    /// A message could not be encoded; nothing was sent.
    #[error("cannot encode message: {0}")]
    Encode(#[source] enchufe_framing::Error),

    /// A request's file region ([`Client::request_file`](crate::Client::request_file))
    /// could not be read, or the file ends before the region does (an
    /// `UnexpectedEof` saying where): nothing of the request was sent, and
    /// the connection goes on. (A file that shrinks while its region is
    /// already going out cannot finish its frame: the connection ends,
    /// [`Error::Framing`] with the same `UnexpectedEof`.)
    #[error("reading the request's file region: {0}")]
    FileRegion(#[source] io::Error),

    /// The framed stream failed: a frame over `max_frame_length` (announced
    /// by the server, and the connection ends; or ours to send, and nothing
    /// was sent), the stream cut inside a frame, the socket failed (broken
    /// pipe, ...), or (multiplexed profile) the hello exchange or the
    /// protocol failed: the server speaks the other profile
    /// (`ProfileMismatch`: a multiplexed client at a plain server, told at
    /// connect, or a plain client at a multiplexed server, told at its
    /// first request or `recv`), another version (`VersionMismatch`), sends
    /// a malformed hello (`BadHello`) or breaks the protocol (`Malformed`;
    /// the client then closes the connection and every pending and later
    /// call fails with it). The framing error is wrapped, never copied,
    /// and shared (`Arc`) because every request waiting on a connection
    /// that failed is told the same error. Ask [`Error::is_closed`],
    /// [`Error::is_frame_too_large`], [`Error::is_profile_mismatch`],
    /// [`Error::is_timeout`]..., or look inside ([`Error::framing`]):
    ///
    /// ```
    /// use enchufe::client::Error;
    /// # fn check(err: Error) {
    /// if let Error::Framing(e) = &err {
    ///     if let enchufe::framing::Error::FrameTooLarge { declared, limit } = &**e {
    ///         eprintln!("{declared} bytes over the limit of {limit}");
    ///     }
    /// }
    /// # }
    /// ```
    #[error(transparent)]
    Framing(std::sync::Arc<enchufe_framing::Error>),

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

    /// Reconnecting client: there is no connection right now (it was lost
    /// and the client is redialing: the server may be down, or the network
    /// between may be cut), and the call could not wait for one:
    /// [`WhileDown::FailFast`](crate::WhileDown::FailFast), or
    /// [`WhileDown::Wait`](crate::WhileDown::Wait) ran out. Nothing was sent.
    #[error("no connection to the server; the client is reconnecting")]
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
    /// ([`Error::Timeout`]), connecting ([`Error::ConnectTimeout`]), the
    /// server's silence ([`Error::Silent`], which is also
    /// [`is_closed`](Error::is_closed)), the server's hello
    /// ([`Mismatch::NoHello`](enchufe_framing::mux::Mismatch::NoHello)), or
    /// the handler on the server ([`Error::Remote`] with
    /// [`ErrorCode::Timeout`]: its `handler_timeout`, or a tower `timeout`
    /// layer).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::ConnectTimeout { .. } | Error::Silent => true,
            Error::Remote {
                code: ErrorCode::Timeout,
                ..
            } => true,
            Error::Framing(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// Whether the connection is gone: closed by us or by the server, cut
    /// inside a frame, reset, dropped as silent, down while reconnecting,
    /// or given up on.
    pub fn is_closed(&self) -> bool {
        match self {
            Error::Closed
            | Error::ClosedByPeer
            | Error::ResetByPeer(_)
            | Error::Silent
            | Error::Disconnected
            | Error::GaveUp { .. } => true,
            Error::Framing(e) => e.is_closed(),
            _ => false,
        }
    }

    /// The server's error code, when it failed this request
    /// ([`Error::Remote`]); `None` for every failure of our own or of the
    /// connection.
    ///
    /// ```
    /// use enchufe::client::Error;
    /// use enchufe::ErrorCode;
    /// # fn check(err: Error) {
    /// match err.code() {
    ///     Some(ErrorCode::BadRequest) => eprintln!("the server could not read our request"),
    ///     Some(code) => eprintln!("the server failed it: {code:?}"),
    ///     None => eprintln!("no answer from the server: {err}"),
    /// }
    /// # }
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the server refused the request for load
    /// ([`Error::Remote`] with [`ErrorCode::Busy`]: too many requests in
    /// flight on the connection, or a tower `load-shed` layer): the request
    /// did not run, and a retry later may succeed.
    pub fn is_busy(&self) -> bool {
        self.code() == Some(ErrorCode::Busy)
    }

    /// Whether the server reset the connection ([`Error::ResetByPeer`]):
    /// it ended on a failure, not with a goodbye. A reconnecting client
    /// that gave up answers for its last attempt.
    pub fn is_reset(&self) -> bool {
        match self {
            Error::ResetByPeer(_) => true,
            Error::Framing(e) => e.is_reset(),
            Error::GaveUp { last, .. } => last.is_reset(),
            _ => false,
        }
    }

    /// Whether what the server sent could not be taken: a message that
    /// does not decode ([`Error::Decode`]), or bytes that broke the framing
    /// or the protocol (an oversize frame, not frames at all, a stream cut
    /// inside a frame, a malformed hello or frame). Not: a refused
    /// connect, a timeout, a profile or version disagreement.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Decode(_) => true,
            Error::Framing(e) => e.is_bad_input(),
            _ => false,
        }
    }

    /// Whether a frame was over `max_frame_length` (an
    /// [`Error::Framing`] holding `FrameTooLarge`), ours to send or the
    /// server's.
    pub fn is_frame_too_large(&self) -> bool {
        matches!(self, Error::Framing(e) if e.is_frame_too_large())
    }

    /// Whether the server is not speaking length-prefixed frames at all (an
    /// [`Error::Framing`] holding `NotFrames`): it looks like HTTP, SSH, TLS
    /// or text.
    pub fn is_not_frames(&self) -> bool {
        matches!(self, Error::Framing(e) if e.is_not_frames())
    }

    /// What the server speaks instead of frames, when it is not speaking
    /// them ([`is_not_frames`](Error::is_not_frames)): a program can give
    /// advice of its own, such as the flag that turns TLS on.
    pub fn looks_like(&self) -> Option<enchufe_framing::Foreign> {
        match self {
            Error::Framing(e) => e.looks_like(),
            _ => None,
        }
    }

    /// Whether the TLS handshake failed (`Error::Tls`; always `false`
    /// without the `tls` feature). A reconnecting client that gave up
    /// answers for its last attempt.
    pub fn is_tls(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Error::Tls { .. } => true,
            Error::GaveUp { last, .. } => last.is_tls(),
            _ => false,
        }
    }

    /// Whether the server speaks the other profile (a framing
    /// `ProfileMismatch`; [`Error::mismatch`] says how it showed).
    pub fn is_profile_mismatch(&self) -> bool {
        match self {
            Error::Framing(e) => e.is_profile_mismatch(),
            Error::GaveUp { last, .. } => last.is_profile_mismatch(),
            _ => false,
        }
    }

    /// How a profile mismatch showed ([`Error::is_profile_mismatch`]): the
    /// setting to change depends on it.
    pub fn mismatch(&self) -> Option<enchufe_framing::mux::Mismatch> {
        match self.framing()? {
            enchufe_framing::Error::ProfileMismatch(how) => Some(*how),
            _ => None,
        }
    }

    /// The framing error inside, when the connection's stream or protocol
    /// failed ([`Error::Framing`], [`Error::ResetByPeer`], or a message
    /// that does not decode or encode), for a caller that needs more than
    /// the predicates.
    pub fn framing(&self) -> Option<&enchufe_framing::Error> {
        match self {
            Error::Framing(e) | Error::ResetByPeer(e) => Some(e),
            Error::Decode(e) | Error::Encode(e) => Some(e),
            _ => None,
        }
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
                | Error::ConnectVia { .. }
                | Error::ConnectTimeout { .. }
        )
    }
}

impl Error {
    /// The client's error for a framing error shared by several callers:
    /// wrapped as the source, except a reset, which the client names
    /// ([`Error::ResetByPeer`]: a failure, where a close is a goodbye).
    pub(crate) fn from_shared(e: Arc<enchufe_framing::Error>) -> Self {
        if e.is_reset() {
            Error::ResetByPeer(e)
        } else {
            Error::Framing(e)
        }
    }
}

impl From<enchufe_framing::Error> for Error {
    fn from(e: enchufe_framing::Error) -> Self {
        use enchufe_framing::Error as F;
        match e {
            F::Encode(_) => Error::Encode(e),
            F::InvalidUtf8 { .. } | F::Decode(_) => Error::Decode(e),
            other => Error::from_shared(Arc::new(other)),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Framing(Arc::new(enchufe_framing::Error::Io(e)))
    }
}

/// How a client's connection ended: the framing crate's one "why it ended"
/// type, with the framing error shared, so every waiting request and every
/// later call is told the same thing.
pub(crate) type Ended = enchufe_engine::Ended<Arc<enchufe_framing::Error>>;

/// What a caller is told about a connection that ended this way.
pub(crate) fn ended_error(how: &Ended) -> Error {
    match how {
        Ended::PeerClosed => Error::ClosedByPeer,
        Ended::Error(e) => Error::from_shared(e.clone()),
        // The link's silence timeout.
        Ended::IdleTimeout => Error::Silent,
        // A client's link ends itself otherwise only by closing; the other
        // reasons are a server's.
        _ => Error::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(code: ErrorCode) -> Error {
        Error::Remote {
            code,
            message: String::from("from the server"),
        }
    }

    #[test]
    fn the_predicates_see_the_servers_error_code() {
        let timeout = remote(ErrorCode::Timeout);
        assert!(timeout.is_timeout());
        assert!(!timeout.is_busy());
        assert_eq!(timeout.code(), Some(ErrorCode::Timeout));

        let busy = remote(ErrorCode::Busy);
        assert!(busy.is_busy());
        assert!(!busy.is_timeout());
        assert_eq!(busy.code(), Some(ErrorCode::Busy));

        let handler = remote(ErrorCode::Handler);
        assert!(!handler.is_timeout() && !handler.is_busy());
        assert_eq!(handler.code(), Some(ErrorCode::Handler));

        // Our own timeout has no server code.
        let ours = Error::Timeout(Duration::from_secs(1));
        assert!(ours.is_timeout());
        assert_eq!(ours.code(), None);
    }

    #[test]
    fn the_predicate_set_of_every_enchufe_error_answers_here() {
        use enchufe_framing::mux::Mismatch;
        use enchufe_framing::Error as F;
        let reset = Error::from(F::Io(io::ErrorKind::ConnectionReset.into()));
        assert!(matches!(reset, Error::ResetByPeer(_)), "{reset:?}");
        let mismatch = Error::from(F::ProfileMismatch(Mismatch::NotAHello));
        assert_eq!(mismatch.mismatch(), Some(Mismatch::NotAHello));
        // Wrapped, not copied: the framing error's own text.
        assert_eq!(
            mismatch.to_string(),
            F::ProfileMismatch(Mismatch::NotAHello).to_string()
        );
        let violation = Error::from(F::Malformed(enchufe_framing::Malformed::Mux(
            enchufe_framing::mux::Violation::UnknownKind,
        )));
        assert!(matches!(violation.framing(), Some(F::Malformed(_))));
        let cases = [
            (
                Error::Timeout(Duration::from_secs(1)),
                [true, false, false, false, false, false, false],
            ),
            (
                Error::ClosedByPeer,
                [false, true, false, false, false, false, false],
            ),
            (reset, [false, true, true, false, false, false, false]),
            (
                Error::from(F::FrameTooLarge {
                    declared: 9,
                    limit: 8,
                }),
                [false, false, false, true, false, true, false],
            ),
            (mismatch, [false, false, false, false, true, false, false]),
            (
                Error::from(F::ProfileMismatch(Mismatch::NoHello(Duration::from_secs(
                    1,
                )))),
                [true, false, false, false, true, false, false],
            ),
            (violation, [false, false, false, false, false, true, false]),
            (
                Error::from(F::InvalidUtf8 { valid_up_to: 0 }),
                [false, false, false, false, false, true, false],
            ),
            (
                remote(ErrorCode::Busy),
                [false, false, false, false, false, false, true],
            ),
            // A reconnecting client that gave up answers for its last try.
            (
                Error::GaveUp {
                    addr: "x:1".into(),
                    attempts: 3,
                    last: Arc::new(Error::from(F::ProfileMismatch(Mismatch::GotHello))),
                },
                [false, true, false, false, true, false, false],
            ),
        ];
        enchufe_framing::assert_predicates!(&cases, is_busy);
    }

    #[test]
    fn disconnected_says_only_what_the_client_knows() {
        // During a partition the server may be up: the text must not say
        // it is down.
        let text = Error::Disconnected.to_string();
        assert_eq!(
            text,
            "no connection to the server; the client is reconnecting"
        );
        assert!(!text.contains("down"), "{text}");
    }
}
