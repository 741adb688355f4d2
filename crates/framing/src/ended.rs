//! Why a connection ended: one type for every role.

use std::fmt;

/// Why a connection ended, the same for a server's connection, a client's
/// and a peer link: given to the server's
/// [`on_disconnect`](../enchufe_server/trait.Handler.html#method.on_disconnect)
/// (as `enchufe_server::Disconnect`), kept by a client's link so every
/// waiting request and every later call is told the same thing.
///
/// `E` is the failure of the role that reports it: the server's `Error`
/// (a handler's panic, a stalled client, bad input) or, for a client's link,
/// the framing [`Error`](crate::Error) behind an `Arc`, shared by every
/// caller that waited on the connection.
///
/// ```
/// use enchufe::framing::Ended;
/// let clean: Ended<std::io::Error> = Ended::PeerClosed;
/// assert!(clean.is_clean());
/// assert_eq!(clean.to_string(), "closed by the other end");
/// let failed: Ended<std::io::Error> = Ended::Error(std::io::ErrorKind::ConnectionReset.into());
/// assert!(!failed.is_clean());
/// assert!(failed.error().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended<E> {
    /// The other end closed its side between frames: a clean goodbye.
    PeerClosed,
    /// This end closed it (`Connection::close`, `Client::close`, or the last
    /// handle of a client dropped).
    Closed,
    /// No complete frame arrived within the idle timeout.
    IdleTimeout,
    /// This end is shutting down.
    Shutdown,
    /// Something failed: bad input, an I/O error, a handler's error or panic,
    /// a stalled reader.
    Error(E),
}

impl<E> Ended<E> {
    /// Whether the connection ended without a failure (a goodbye from either
    /// end, an idle timeout or a shutdown).
    pub fn is_clean(&self) -> bool {
        !matches!(self, Ended::Error(_))
    }

    /// The failure, if it ended with one.
    pub fn error(&self) -> Option<&E> {
        match self {
            Ended::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The same reason with its failure mapped (a role's error wrapped in
    /// another's).
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> Ended<F> {
        match self {
            Ended::PeerClosed => Ended::PeerClosed,
            Ended::Closed => Ended::Closed,
            Ended::IdleTimeout => Ended::IdleTimeout,
            Ended::Shutdown => Ended::Shutdown,
            Ended::Error(e) => Ended::Error(f(e)),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Ended<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::PeerClosed => f.write_str("closed by the other end"),
            Ended::Closed => f.write_str("closed by this end"),
            Ended::IdleTimeout => f.write_str("idle timeout"),
            Ended::Shutdown => f.write_str("shutting down"),
            Ended::Error(e) => write!(f, "error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_err_keeps_the_reason_and_wraps_the_failure() {
        let ended: Ended<&str> = Ended::Error("boom");
        assert_eq!(
            ended.map_err(String::from),
            Ended::Error("boom".to_string())
        );
        let clean: Ended<&str> = Ended::IdleTimeout;
        assert_eq!(clean.map_err(|e| e.len()), Ended::IdleTimeout);
        assert_eq!(Ended::<&str>::Shutdown.to_string(), "shutting down");
        assert_eq!(Ended::Error("boom").to_string(), "error: boom");
    }
}
