//! One error type for both ends of a transfer.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::AddrError;

/// Opens the regular file at `path` to send it, with its metadata; a
/// failure, or a path that is not a regular file (a directory, say), is
/// [`Error::Open`] naming it.
pub(crate) async fn open_to_send(
    path: &std::path::Path,
) -> Result<(tokio::fs::File, std::fs::Metadata)> {
    let open = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(open)?;
    let meta = file.metadata().await.map_err(open)?;
    if !meta.is_file() {
        return Err(open(io::Error::other("not a regular file")));
    }
    Ok((file, meta))
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the transfer protocol was broken, for [`Error::Protocol`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// An [`Upload`](crate::Upload)'s source was asked for a second time.
    #[error("an upload's source is read once")]
    SourceSpent,
    /// The task reading the source ahead stopped before the declared size.
    #[error("the chunk producer ended early")]
    ProducerEnded,
    /// The receiver answered with a message the sender was not waiting for
    /// (its `Debug` text).
    #[error("unexpected reply {0}")]
    UnexpectedReply(String),
    /// The receiver answered with a chunk.
    #[error("a chunk where a reply was expected")]
    ChunkForReply,
    /// The sender sent a message only a receiver sends (its `Debug` text).
    #[error("a receiver does not answer {0}")]
    NotForReceiver(String),
    /// The two ends hash the body with different algorithms.
    #[error(
        "the sender checks the body with {theirs:?}, this receiver with {ours:?}: \
         use the same version of enchufe on both ends"
    )]
    DigestMismatch {
        /// The sender's algorithm.
        theirs: String,
        /// This receiver's.
        ours: &'static str,
    },
    /// A chunk over the receiver's `max_chunk`.
    #[error("a chunk of {len} bytes, over max_chunk")]
    ChunkTooLarge {
        /// Its length.
        len: u64,
    },
    /// A chunk that ends past the declared size.
    #[error("a chunk past the declared size (offset {offset})")]
    ChunkPastEnd {
        /// Where it starts.
        offset: u64,
    },
    /// A chunk already received.
    #[error("a chunk sent twice (offset {offset})")]
    ChunkTwice {
        /// Where it starts.
        offset: u64,
    },
    /// A chunk further ahead than the window allows.
    #[error("a chunk beyond the window (offset {offset})")]
    ChunkBeyondWindow {
        /// Where it starts.
        offset: u64,
    },
    /// The receiver's task that opens the file failed (panicked or was
    /// cancelled).
    #[error("the writer's task failed: {0}")]
    WriterFailed(#[source] tokio::task::JoinError),
}

/// Why a transfer failed, on either end.
///
/// The receiver's own failures are the named variants; the sender sees the
/// same failures as [`Error::Refused`] with the matching [`Reason`], since
/// they travel as a code and a message. [`Error::reason`] answers for both,
/// so a test or a caller asks one question at either end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection failed, closed or timed out under a request.
    #[error("connection: {0}")]
    Client(#[from] enchufe_client::Error),
    /// Reading the local source (the sender's file or reader) failed.
    #[error("reading the source: {0}")]
    Source(#[source] io::Error),
    /// The file to send could not be opened (or its size read).
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file, as given.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The course sender could not connect to the receiver: the address as
    /// given, and the operating system's error.
    #[error("cannot connect to {0}")]
    Connect(#[source] AddrError),
    /// The course protocol's connection failed (not a refusal: see
    /// [`Error::NotConfirmed`]).
    #[error("connection: {0}")]
    Connection(#[source] io::Error),
    /// The course receiver did not answer `Gracias.`: it closed or reset
    /// the connection before the body was through, or answered something
    /// else. The course protocol has no way to say why (a size over its
    /// limit, a full disk, a directory it cannot write), so the message
    /// points at the receiver's log.
    #[error("{}", not_confirmed(*sent, *size, reply))]
    NotConfirmed {
        /// Body bytes written before the connection ended.
        sent: u64,
        /// The declared size.
        size: u64,
        /// What the receiver answered instead (often nothing).
        reply: Vec<u8>,
    },
    /// The source ended before the size it declared.
    #[error("the source ended after {read} of {expected} bytes")]
    SourceEnded {
        /// The declared size.
        expected: u64,
        /// What it gave before its end.
        read: u64,
    },
    /// Writing, syncing or renaming on the receiver failed (a full disk is
    /// one of these: [`Error::is_storage_full`]).
    #[error("storage at {path}: {source}")]
    Storage {
        /// The file being written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The declared size is over the receiver's `max_file_size`.
    #[error("{size} bytes declared, the limit is {limit}")]
    TooLarge {
        /// The declared size.
        size: u64,
        /// The receiver's limit.
        limit: u64,
    },
    /// The name is not a plain file name (empty, `.` or `..`, a path
    /// separator, an absolute path, a NUL, too long, or a temporary name).
    #[error("file name {name:?} refused: {why}")]
    BadName {
        /// The name as offered.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A file of that name exists and the receiver does not overwrite.
    #[error("{name:?} already exists")]
    Exists {
        /// The name as offered.
        name: String,
    },
    /// The receiver already runs `max_transfers` transfers.
    #[error("busy: {limit} transfers already running")]
    Busy {
        /// The receiver's limit.
        limit: usize,
    },
    /// A transfer with this id is running on another live connection.
    #[error("transfer {id} is already running")]
    InUse {
        /// The transfer id, in hex.
        id: String,
    },
    /// The bytes received do not hash to what the sender computed.
    #[error("hash mismatch: sender {expected}, received {actual}")]
    HashMismatch {
        /// The sender's XXH3-128, in hex.
        expected: String,
        /// The receiver's XXH3-128 of what arrived, in hex.
        actual: String,
    },
    /// The body ended before its declared size.
    #[error("truncated: {received} of {expected} bytes")]
    Truncated {
        /// The declared size.
        expected: u64,
        /// What arrived.
        received: u64,
    },
    /// A course sender was slower than the receiver's overall deadline
    /// (`course::Config::min_rate`, `grace`, `max_time`) allows.
    #[error(
        "too slow: {received} of {expected} bytes in {after:?}, under the receiver's minimum rate"
    )]
    TooSlow {
        /// Bytes of the body that arrived.
        received: u64,
        /// The declared size.
        expected: u64,
        /// The time the transfer was given.
        after: Duration,
    },
    /// No chunk arrived for the idle deadline; the partial file is kept for
    /// a resume.
    #[error("stalled: nothing for {0:?}")]
    Stalled(Duration),
    /// The transfer was interrupted on the receiver (its connection went
    /// away, or the receiver shut down); the partial file is kept for a
    /// resume.
    #[error("interrupted; the partial file is kept for a resume")]
    Interrupted,
    /// The transfer was cancelled (by either end); the partial file is gone.
    #[error("cancelled")]
    Cancelled,
    /// The receiver holds a partial file for this id whose bytes are not
    /// this source's first bytes, and the source cannot be read again from
    /// its start (a reader, not a file). The sender cancels the transfer,
    /// so the receiver deletes that partial file; send again to start over.
    #[error("the receiver's first {offset} bytes differ from this source's")]
    ResumeMismatch {
        /// The bytes the receiver held.
        offset: u64,
    },
    /// A wait of this crate (not a request: those are
    /// [`Error::Client`]) ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The other end broke the transfer protocol (or an upload was used
    /// twice): [`Violation`] says how.
    #[error("protocol: {0}")]
    Protocol(#[source] Violation),
    /// The receiver refused or failed the transfer.
    #[error("refused by the receiver ({reason:?}): {message}")]
    Refused {
        /// What kind of failure.
        reason: Reason,
        /// The receiver's description.
        message: String,
    },
}

/// What went wrong, as a code both ends share: carried on the wire when
/// the receiver refuses, and answered by [`Error::reason`] at either end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// [`Error::TooLarge`].
    TooLarge,
    /// [`Error::BadName`].
    BadName,
    /// [`Error::Exists`].
    Exists,
    /// [`Error::Busy`].
    Busy,
    /// [`Error::InUse`].
    InUse,
    /// [`Error::HashMismatch`].
    HashMismatch,
    /// [`Error::Truncated`].
    Truncated,
    /// [`Error::Storage`].
    Storage,
    /// [`Error::Storage`] with `ENOSPC`: the receiver's disk is full.
    StorageFull,
    /// [`Error::Stalled`].
    Stalled,
    /// [`Error::Cancelled`].
    Cancelled,
    /// [`Error::Interrupted`].
    Interrupted,
    /// [`Error::ResumeMismatch`].
    ResumeMismatch,
    /// A chunk or finish for a transfer the receiver does not run (never
    /// offered, or already ended).
    UnknownTransfer,
    /// [`Error::Protocol`], or anything else.
    Protocol,
}

impl Error {
    /// The shared code for this failure: the named variant's, or the one a
    /// refusal carried. `None` for failures of the connection or of the
    /// local source, which are not the receiver's answer.
    pub fn reason(&self) -> Option<Reason> {
        Some(match self {
            Error::Refused { reason, .. } => *reason,
            Error::TooLarge { .. } => Reason::TooLarge,
            Error::BadName { .. } => Reason::BadName,
            Error::Exists { .. } => Reason::Exists,
            Error::Busy { .. } => Reason::Busy,
            Error::InUse { .. } => Reason::InUse,
            Error::HashMismatch { .. } => Reason::HashMismatch,
            Error::Truncated { .. } => Reason::Truncated,
            Error::Storage { .. } if self.is_storage_full() => Reason::StorageFull,
            Error::Storage { .. } => Reason::Storage,
            Error::Stalled(_) | Error::TooSlow { .. } => Reason::Stalled,
            Error::Cancelled => Reason::Cancelled,
            Error::Interrupted => Reason::Interrupted,
            Error::ResumeMismatch { .. } => Reason::ResumeMismatch,
            Error::Protocol(_) => Reason::Protocol,
            Error::Client(_)
            | Error::Source(_)
            | Error::Open { .. }
            | Error::Connect(_)
            | Error::Connection(_)
            | Error::NotConfirmed { .. }
            | Error::SourceEnded { .. }
            | Error::Timeout { .. } => return None,
        })
    }

    /// The receiver's disk (or quota) is full, here or on the other end.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Storage { source, .. } => source.raw_os_error() == Some(ENOSPC),
            Error::Refused { reason, .. } => *reason == Reason::StorageFull,
            _ => false,
        }
    }

    /// The connection closed under the transfer (a cut transfer: resume it).
    pub fn is_closed(&self) -> bool {
        match self {
            Error::Client(e) => e.is_closed(),
            Error::Connection(e) => is_gone(e),
            Error::NotConfirmed { sent, size, .. } => sent < size,
            _ => false,
        }
    }

    /// A wait ran out: a request, or one of this crate's own.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Client(e) => e.is_timeout(),
            Error::Timeout { .. } | Error::Stalled(_) | Error::TooSlow { .. } => true,
            _ => false,
        }
    }

    /// The connection was reset under the transfer (`ECONNRESET`): the
    /// other end ended it on a failure.
    pub fn is_reset(&self) -> bool {
        match self {
            Error::Client(e) => e.is_reset(),
            Error::Connection(e) => e.kind() == io::ErrorKind::ConnectionReset,
            _ => false,
        }
    }

    /// A frame of the connection was over its `max_frame_length` (not a
    /// file over `max_file_size`: that is [`Error::TooLarge`]).
    pub fn is_frame_too_large(&self) -> bool {
        matches!(self, Error::Client(e) if e.is_frame_too_large())
    }

    /// The other end speaks the other profile of the frame protocol.
    pub fn is_profile_mismatch(&self) -> bool {
        matches!(self, Error::Client(e) if e.is_profile_mismatch())
    }

    /// What the other end sent could not be taken: it broke the transfer
    /// protocol ([`Error::Protocol`]), offered a name that is not a plain
    /// file name ([`Error::BadName`]), sent bytes that do not hash to what
    /// it computed ([`Error::HashMismatch`]), or broke the framing.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Protocol(_) | Error::BadName { .. } | Error::HashMismatch { .. } => true,
            Error::Client(e) => e.is_bad_input(),
            _ => false,
        }
    }

    /// The receiver is at its limit of transfers ([`Error::Busy`], or
    /// refused as busy), or the server refused a request for load: a retry
    /// later may succeed.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Busy { .. } => true,
            Error::Refused { reason, .. } => *reason == Reason::Busy,
            Error::Client(e) => e.is_busy(),
            _ => false,
        }
    }

    /// The error as the receiver sends it.
    pub(crate) fn to_refusal(&self) -> (Reason, String) {
        (self.reason().unwrap_or(Reason::Protocol), self.to_string())
    }

    pub(crate) fn storage(path: &std::path::Path, source: io::Error) -> Error {
        Error::Storage {
            path: path.to_owned(),
            source,
        }
    }
}

/// The other end closed or reset the connection.
pub(crate) fn is_gone(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

fn not_confirmed(sent: u64, size: u64, reply: &[u8]) -> String {
    let what = if sent < size {
        format!("the receiver closed the connection after {sent} of {size} bytes")
    } else if reply.is_empty() {
        "the receiver closed the connection without answering".to_owned()
    } else {
        format!(
            "the receiver answered {:?} instead of \"Gracias.\"",
            String::from_utf8_lossy(reply)
        )
    };
    format!(
        "{what}: it did not confirm the file, so it refused it or could not store it \
         (see the receiver's log)"
    )
}

/// Linux's "no space left on device" (the same number on every Unix the
/// workspace builds for), named here so the crate needs no libc.
pub(crate) const ENOSPC: i32 = 28;

#[cfg(test)]
mod tests {
    use super::*;
    use enchufe_framing::mux::Mismatch;
    use std::sync::Arc;

    #[test]
    fn the_predicate_set_of_every_enchufe_error_answers_here() {
        let framing = |e| Error::Client(enchufe_client::Error::Framing(Arc::new(e)));
        let cases = [
            (
                Error::Stalled(Duration::from_secs(1)),
                [true, false, false, false, false, false, false],
            ),
            (
                Error::Connection(io::ErrorKind::ConnectionReset.into()),
                [false, true, true, false, false, false, false],
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
                [false, false, false, false, true, false, false],
            ),
            (
                Error::Protocol(Violation::ChunkForReply),
                [false, false, false, false, false, true, false],
            ),
            (
                Error::Busy { limit: 4 },
                [false, false, false, false, false, false, true],
            ),
            // A file over the receiver's limit is not a frame over it.
            (
                Error::TooLarge { size: 9, limit: 8 },
                [false, false, false, false, false, false, false],
            ),
        ];
        enchufe_framing::assert_predicates!(&cases, is_busy);
    }
}
