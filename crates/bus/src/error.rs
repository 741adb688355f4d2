//! The bus's one error type.

use enchufe_framing::BoxError;

/// What went wrong on the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bus cannot be reached now (Redis down, refused, reset); the
    /// source is the transport's error. Retrying later may succeed.
    #[error("bus unavailable")]
    Unavailable(#[source] BoxError),
    /// The bus did not answer within its command timeout.
    #[error("bus timed out")]
    Timeout,
    /// The bus, or the cluster attached to it, has been closed.
    #[error("bus closed")]
    Closed,
    /// A message, channel or room name is longer than its limit.
    #[error("{what} of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// What was too long (`"message"`, `"room name"`…).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The outgoing queue is full (the bus is slower than the senders);
    /// the message was dropped and counted.
    #[error("outgoing bus queue full")]
    Full,
    /// A message could not be encoded.
    #[error("encoding failed")]
    Encode(#[source] enchufe_framing::Error),
    /// The bus keeps no history, so nothing can be recovered from it.
    #[error("this bus keeps no history")]
    NoHistory,
    /// The connection is already being recovered in that room
    /// ([`Cluster::recover`](crate::Cluster::recover)).
    #[error("already recovering this connection in this room")]
    Recovering,
    /// The bus's address is not a valid URL.
    #[error("invalid bus address")]
    Address(#[source] BoxError),
}

impl Error {
    /// The bus did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// The bus or the cluster is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// The bus cannot be reached now (down, timed out); a later try may
    /// succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout)
    }

    /// Something was over a limit in bytes.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::TooLarge { .. })
    }

    /// A message was over [`Config::max_message_bytes`](crate::Config::max_message_bytes)
    /// (the bus's counterpart of a frame over its limit).
    pub fn is_frame_too_large(&self) -> bool {
        matches!(
            self,
            Error::TooLarge {
                what: "message",
                ..
            }
        )
    }

    /// Refused for load: the outgoing queue was full, or the connection is
    /// already being recovered in that room. A later try may succeed.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Full | Error::Recovering)
    }

    /// The connection to the bus was reset (`ECONNRESET`) rather than
    /// refused or timed out.
    pub fn is_reset(&self) -> bool {
        let Error::Unavailable(source) = self else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return io.kind() == std::io::ErrorKind::ConnectionReset;
            }
            cause = e.source();
        }
        false
    }

    /// The caller's input was refused: a name or message over its limit, a
    /// message that does not encode, an address that is not a URL.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::TooLarge { .. } | Error::Encode(_) | Error::Address(_)
        )
    }
}

/// A `Result` with the bus's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn predicates_answer_for_every_layer() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(Error::Unavailable(Box::new(reset)).is_reset());
        assert!(!Error::Unavailable(Box::new(refused)).is_reset());
        assert!(Error::Unavailable("down".into()).is_unavailable());
        assert!(Error::Timeout.is_timeout() && Error::Timeout.is_unavailable());
        assert!(Error::Closed.is_closed() && !Error::Closed.is_unavailable());
        assert!(Error::Full.is_busy() && Error::Recovering.is_busy());
        let message = Error::TooLarge {
            what: "message",
            len: 2,
            limit: 1,
        };
        let room = Error::TooLarge {
            what: "room name",
            len: 2,
            limit: 1,
        };
        assert!(message.is_frame_too_large() && message.is_bad_input());
        assert!(!room.is_frame_too_large() && room.is_too_large() && room.is_bad_input());
        assert!(!Error::NoHistory.is_bad_input() && !Error::NoHistory.is_busy());
    }
}
