//! The harness's one error type.

/// Why a load run, a server or the harness failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// An echo did not match what was sent: the check every run makes on
    /// every byte, so a fast but wrong server cannot win.
    #[error("connection {conn}, frame {frame}: echo differs from what was sent ({detail})")]
    Mismatch {
        /// Which connection of the run (0-based).
        conn: usize,
        /// Which frame on that connection (0-based), or which request of a task.
        frame: u64,
        /// Lengths, or the first differing byte.
        detail: String,
    },
    /// The server closed a connection while echoes were still owed.
    #[error("connection {conn}: closed by the server after {received} echoes, {owed} more owed")]
    Closed {
        /// Which connection of the run (0-based).
        conn: usize,
        /// Echoes received before the close.
        received: u64,
        /// Frames sent and not yet echoed.
        owed: u64,
    },
    /// A socket, file or child-process operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The enchufe `Client` failed a request.
    #[error("enchufe client: {0}")]
    Client(#[from] enchufe::client::Error),
    /// The tarpc client failed a call.
    #[error("tarpc: {0}")]
    Rpc(#[from] tarpc::client::RpcError),
    /// A child process misbehaved, or its output could not be read.
    #[error("{0}")]
    Harness(String),
}

/// Result with [`Error`].
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn harness(msg: impl Into<String>) -> Error {
        Error::Harness(msg.into())
    }
}
