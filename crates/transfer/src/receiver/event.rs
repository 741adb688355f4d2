//! What happens to transfers, for progress bars and logs.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Error;
use crate::protocol::TransferId;
use crate::Progress;

/// What happens to transfers, for progress bars and logs
/// ([`Receiver::events`](crate::Receiver::events)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A transfer was accepted (from `offset` when it resumes).
    Started {
        /// Its id.
        id: TransferId,
        /// The file name offered.
        name: String,
        /// Its declared size.
        size: u64,
        /// Bytes already held from an earlier attempt.
        offset: u64,
        /// Bytes written so far, updated as chunks reach the file.
        progress: watch::Receiver<Progress>,
    },
    /// The file is complete, verified and under its final name.
    Finished {
        /// Its id.
        id: TransferId,
        /// Where it is.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Its XXH3-128, in hex; empty from a
        /// [`course::Receiver`](crate::course::Receiver), whose protocol
        /// carries no hash.
        hash: String,
    },
    /// The transfer ended without a file (see [`Error::reason`]).
    Failed {
        /// Its id.
        id: TransferId,
        /// The file name offered.
        name: String,
        /// Why.
        error: Arc<Error>,
    },
}
