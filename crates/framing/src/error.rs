use std::io;

/// A boxed error from a message encoder or decoder (serde, a user codec).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a frame or message could not be read or written.
///
/// Match on the variant, not on the message text: the text may change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying I/O failed (reset, broken pipe, ...).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),

    /// A frame declared (inbound) or needed (outbound) more bytes than the
    /// configured `max_frame_length`. Inbound, the stream cannot resync after
    /// this, so the connection must end.
    #[error("frame of {declared} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The payload length the header declared, or the outbound payload's length.
        declared: u64,
        /// The configured limit.
        limit: usize,
    },

    /// The stream ended inside a frame: the peer closed or crashed mid-message.
    /// This is not a clean close.
    #[error("stream ended inside a frame: got {received} of {expected} bytes")]
    UnexpectedEof {
        /// Bytes that frame needed: 4 if its header was incomplete, else 4 + payload length.
        expected: u64,
        /// Bytes of that frame that did arrive, header included.
        received: u64,
    },

    /// A text message was not valid UTF-8.
    #[error("text message is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },

    /// A message could not be decoded from its frame (for example, JSON that
    /// does not match the expected type).
    #[error("could not decode message: {0}")]
    Decode(#[source] BoxError),

    /// The first frame of a multiplexed connection was not a hello: the
    /// other side speaks another protocol (a plain client, say).
    #[error("expected an enchufe hello; the peer speaks another protocol")]
    BadHello,

    /// The other side speaks another version of the multiplexed protocol.
    #[error("protocol version mismatch: we speak {ours}, the peer {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// Theirs.
        theirs: u8,
    },

    /// A multiplexed frame broke the protocol (too short, unknown kind, a
    /// kind that may not travel in that direction).
    #[error("protocol violation: {0}")]
    Malformed(&'static str),

    /// A message could not be encoded into a frame.
    #[error("could not encode message: {0}")]
    Encode(#[source] BoxError),
}

impl Error {
    /// Whether a frame's declared length was over the limit
    /// ([`Error::FrameTooLarge`]).
    pub fn is_frame_too_large(&self) -> bool {
        matches!(self, Error::FrameTooLarge { .. })
    }

    /// Whether the stream ended (cleanly or inside a frame) or the
    /// connection was reset or broken.
    pub fn is_closed(&self) -> bool {
        match self {
            Error::UnexpectedEof { .. } => true,
            Error::Io(e) => is_closed_io(e),
            _ => false,
        }
    }

    /// Whether an I/O operation timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    /// Whether this error ends the stream it happened on (as opposed to one
    /// message failing to decode or encode, after which the stream is still
    /// usable).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::FrameTooLarge { .. } | Error::UnexpectedEof { .. }
        )
    }
}

/// Whether an I/O error means the connection is gone (reset, aborted,
/// broken pipe, EOF, not connected): what every crate's `is_closed()` asks
/// of an `io::Error`.
pub fn is_closed_io(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_answer_without_knowing_the_variant() {
        let big = Error::FrameTooLarge {
            declared: 9,
            limit: 8,
        };
        assert!(big.is_frame_too_large() && !big.is_closed() && !big.is_timeout());
        let cut = Error::UnexpectedEof {
            expected: 8,
            received: 3,
        };
        assert!(cut.is_closed() && !cut.is_frame_too_large());
        assert!(Error::Io(io::ErrorKind::ConnectionReset.into()).is_closed());
        assert!(Error::Io(io::ErrorKind::TimedOut.into()).is_timeout());
        assert!(!Error::Malformed("x").is_closed());
    }
}
