//! The peer's one error type: links fail with the server's error, wrapped.

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a peer operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener could not be bound, or a link failed (the inner error
    /// says how: [`Timeout`](enchufe_server::Error::Timeout),
    /// [`Remote`](enchufe_server::Error::Remote), a framing error...).
    #[error(transparent)]
    Server(#[from] enchufe_server::Error),

    /// No live link to a peer with this id.
    #[error("no link to peer {0:?}")]
    NotConnected(String),

    /// Dialing gave up: the other peer never came up within
    /// [`Backoff::max_attempts`](crate::Backoff::max_attempts) (only with a limit set; by default a peer
    /// dials until the other comes up).
    #[error("cannot reach peer {addr} after {attempts} attempts: {last}")]
    Unreachable {
        /// The address dialed.
        addr: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: enchufe_server::Error,
    },

    /// The peer is closing or closed.
    #[error("the peer is closed")]
    Closed,
}

impl Error {
    /// The server's error inside: a failed link's, or the last attempt's
    /// of a dialer that gave up. The predicates look through it.
    fn server(&self) -> Option<&enchufe_server::Error> {
        match self {
            Error::Server(e) | Error::Unreachable { last: e, .. } => Some(e),
            _ => None,
        }
    }

    /// Whether something took too long: a request to a peer, a link's
    /// hello (for a dialer that gave up, its last attempt).
    pub fn is_timeout(&self) -> bool {
        self.server().is_some_and(enchufe_server::Error::is_timeout)
    }

    /// Whether there is no link: the peer is closed, not connected, or the
    /// link went away.
    pub fn is_closed(&self) -> bool {
        match self {
            Error::Closed | Error::NotConnected(_) => true,
            Error::Server(e) => e.is_closed(),
            _ => false,
        }
    }

    /// Whether a link was reset (`ECONNRESET`) rather than closed.
    pub fn is_reset(&self) -> bool {
        self.server().is_some_and(enchufe_server::Error::is_reset)
    }

    /// Whether a frame was over the limit.
    pub fn is_frame_too_large(&self) -> bool {
        self.server()
            .is_some_and(enchufe_server::Error::is_frame_too_large)
    }

    /// Whether the other end speaks the other profile (a plain server where
    /// a peer was dialed, say).
    pub fn is_profile_mismatch(&self) -> bool {
        self.server()
            .is_some_and(enchufe_server::Error::is_profile_mismatch)
    }

    /// Whether what the other end sent broke the framing or the protocol,
    /// or it was too slow to send its hello or a frame
    /// ([`enchufe_server::Error::is_bad_input`]).
    pub fn is_bad_input(&self) -> bool {
        self.server()
            .is_some_and(enchufe_server::Error::is_bad_input)
    }

    /// Whether the other peer refused a request for load: it did not run,
    /// and a retry later may succeed.
    pub fn is_busy(&self) -> bool {
        self.server().is_some_and(enchufe_server::Error::is_busy)
    }

    /// The other peer's error code, when it failed a request; `None` for
    /// every other failure.
    pub fn code(&self) -> Option<enchufe_framing::mux::ErrorCode> {
        self.server().and_then(enchufe_server::Error::code)
    }

    /// Whether a link's TLS handshake failed (always `false` without the
    /// `tls` feature); for a dialer that gave up, its last attempt.
    pub fn is_tls(&self) -> bool {
        self.server().is_some_and(enchufe_server::Error::is_tls)
    }

    /// Whether the other end is not speaking length-prefixed frames at all
    /// (it looks like HTTP, SSH, TLS or text).
    pub fn is_not_frames(&self) -> bool {
        self.server()
            .is_some_and(enchufe_server::Error::is_not_frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enchufe_framing::mux::{ErrorCode, Mismatch};
    use std::io;
    use std::time::Duration;

    #[test]
    fn every_predicate_looks_through_the_server_error() {
        let framing = |e| Error::Server(enchufe_server::Error::Framing(e));
        let cases = [
            (
                Error::Server(enchufe_server::Error::Timeout(Duration::from_secs(1))),
                [true, false, false, false, false, false, false],
            ),
            (
                Error::Closed,
                [false, true, false, false, false, false, false],
            ),
            (
                framing(io::Error::from(io::ErrorKind::ConnectionReset).into()),
                [false, true, true, false, false, true, false],
            ),
            (
                framing(enchufe_framing::Error::FrameTooLarge {
                    declared: 9,
                    limit: 8,
                }),
                [false, false, false, true, false, true, false],
            ),
            (
                framing(enchufe_framing::Error::ProfileMismatch(Mismatch::GotHello)),
                [false, false, false, false, true, true, false],
            ),
            (
                Error::Server(enchufe_server::Error::Remote {
                    code: ErrorCode::Busy,
                    message: "full".into(),
                }),
                [false, false, false, false, false, false, true],
            ),
            // A dialer that gave up answers for its last attempt.
            (
                Error::Unreachable {
                    addr: "x:1".into(),
                    attempts: 3,
                    last: enchufe_server::Error::Timeout(Duration::from_secs(1)),
                },
                [true, false, false, false, false, false, false],
            ),
        ];
        enchufe_framing::assert_predicates!(&cases, is_busy);
        assert_eq!(cases[5].0.code(), Some(ErrorCode::Busy));
        assert_eq!(Error::Closed.code(), None);
    }
}
