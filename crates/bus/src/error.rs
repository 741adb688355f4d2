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
}

/// A `Result` with the bus's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
