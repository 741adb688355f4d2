//! The receiving end: a [`Handler`] (or a helper inside yours) that writes
//! offered files under a directory, by temporary name first.
//!
//! ```text
//!  request handlers (one per frame, concurrent on the multiplexed profile)
//!    offer  -> registry (limits) -> spawn a writer task -> Accept{offset}
//!    chunk  -> writer's bounded queue (window) -> Ack       (no disk wait)
//!    finish -> writer: all bytes? hash equal? fsync, rename -> Done
//!  writer task (one per transfer, owns the file and the running XXH3-128)
//!    chunks reordered by offset (at most `window` ahead), written in
//!    batches on the blocking pool; idle deadline; cancel deletes, a cut
//!    (connection gone, stall, shutdown) keeps the partial file for a resume
//!  leftovers (partial files of cut transfers): pruned by age and total size
//!    at each offer; on a full disk the oldest go first, so they never make
//!    a transfer running now fail
//! ```

mod config;
mod event;
mod leftovers;
mod names;
mod registry;
mod writer;

pub use config::Config;
pub use event::Event;
use registry::{failure_of, Active, Cmd, Inner, EXIT_WAIT};

use leftovers::*;
pub(crate) use names::remove_quietly;
use names::*;
pub use names::{check_name, prepare_dir};
use writer::*;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use enchufe_server::{Connection, ConnectionId, Disconnect, Handler};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::digest::ALGORITHM;
use crate::error::{Error, Reason, Result, Violation};
use crate::protocol::{Chunk, Control, Frame, FrameKind, TransferId};

/// Receives transfers into a directory: serve it as a [`Handler`], or
/// call [`Receiver::handle`] from yours for requests that are
/// [`Routed::Transfer`](crate::Routed::Transfer).
///
/// A file is written as `DIR/.enchufe-<id>.part` and renamed to
/// `DIR/<name>` only once every byte arrived and its XXH3-128 equals the
/// sender's; a failed, cancelled or cut transfer never leaves a file under
/// the final name. A cut one (connection lost, stalled, shut down) keeps
/// its partial file, and the same id offered again resumes from it, within
/// [`Config::max_part_age`] and [`Config::max_part_bytes`].
///
/// # Examples
///
/// ```
/// use enchufe::client::Client;
/// use enchufe::server::Server;
/// use enchufe::transfer::{Receiver, Upload};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let receiver = Receiver::new(dir.path(), Default::default());
/// let server = Server::bind("127.0.0.1:0").await?.serve(receiver.clone());
///
/// let client = Client::connect(server.local_addr()).await?;
/// let upload = Upload::reader(&b"hola, mundo"[..], "saludo.txt", 11);
/// let receipt = upload.send(&client).await?;
/// assert_eq!(std::fs::read(dir.path().join("saludo.txt"))?, b"hola, mundo");
/// assert_eq!(receipt.size, 11);
///
/// server.shutdown().await;
/// receiver.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
}
impl Receiver {
    /// A receiver writing into `dir` (which must exist and be writable:
    /// [`prepare_dir`] checks both).
    pub fn new(dir: impl Into<PathBuf>, config: Config) -> Receiver {
        Receiver {
            inner: Arc::new(Inner {
                dir: dir.into(),
                config,
                active: Mutex::new(HashMap::new()),
                failed: Mutex::new(std::collections::VecDeque::new()),
                events: broadcast::channel(64).0,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The directory files are written into.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Events of every transfer from now on. A receiver that lags behind
    /// by more than 64 events loses the oldest (`broadcast`).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Transfers running now.
    pub fn active(&self) -> usize {
        self.inner.active.lock().expect("registry lock").len()
    }

    /// Answers one transfer frame that arrived on `conn`. Never fails: a
    /// refusal is itself the reply, so the connection (and your other
    /// requests on it) go on.
    pub async fn handle(&self, frame: Frame, conn: &Connection) -> Frame {
        let reply = match frame.0 {
            FrameKind::Chunk(chunk) => self.chunk(chunk).await,
            FrameKind::Control(Control::Offer {
                id,
                name,
                size,
                digest,
                restart,
            }) => self.offer(id, name, size, &digest, restart, conn).await,
            FrameKind::Control(Control::Finish { id, hash }) => self.finish(id, hash).await,
            FrameKind::Control(Control::Cancel { id }) => self.cancel_requested(id).await,
            FrameKind::Control(other) => Err(Error::Protocol(Violation::NotForReceiver(format!(
                "{other:?}"
            )))),
        };
        Frame::control(reply.unwrap_or_else(|e| {
            let (reason, message) = e.to_refusal();
            Control::Refused { reason, message }
        }))
    }

    /// Ends the transfers of a connection that is gone, keeping their
    /// partial files for a resume. A [`Receiver`] served as the handler
    /// does this in `on_disconnect`; call it from yours.
    pub fn disconnected(&self, conn: ConnectionId) {
        let active = self.inner.active.lock().expect("registry lock");
        for a in active.values().filter(|a| a.conn == conn) {
            a.cut.cancel();
        }
    }

    /// Cancels a running transfer from this end: its partial file is
    /// deleted and the sender's next request is refused with
    /// [`Reason::Cancelled`]. Whether it was running.
    pub fn cancel(&self, id: TransferId) -> bool {
        let active = self.inner.active.lock().expect("registry lock");
        active.get(&id).map(|a| a.cancel.cancel()).is_some()
    }

    /// Ends every transfer (partial files kept) and waits for their tasks.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    async fn offer(
        &self,
        id: TransferId,
        name: String,
        size: u64,
        digest: &str,
        restart: bool,
        conn: &Connection,
    ) -> Result<Control> {
        let config = &self.inner.config;
        if digest != ALGORITHM {
            return Err(Error::Protocol(Violation::DigestMismatch {
                theirs: digest.to_owned(),
                ours: ALGORITHM,
            }));
        }
        check_name(&name)?;
        if size > config.max_file_size {
            return Err(Error::TooLarge {
                size,
                limit: config.max_file_size,
            });
        }
        let dest = self.inner.dir.join(&name);
        if !config.overwrite && dest.exists() {
            return Err(Error::Exists { name });
        }
        self.prune(id).await;
        let (active, rx) = self.register(id, size, conn).await?;
        let (accept_tx, accept_rx) = oneshot::channel();
        let writer = Writer {
            inner: self.inner.clone(),
            active: active.clone(),
            id,
            name,
            size,
            dest,
            part: self.inner.dir.join(part_name(id)),
        };
        self.inner.tasks.spawn(writer.run(restart, rx, accept_tx));
        // Hashing a long partial file back takes time: bounded by the
        // idle deadline, the same as any wait for the writer.
        match tokio::time::timeout(config.idle_timeout, accept_rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(failure_of(&active)),
            Err(_) => {
                active.cut.cancel();
                Err(Error::Timeout {
                    what: "the partial file to be read back",
                    after: config.idle_timeout,
                })
            }
        }
    }

    /// Adds a transfer to the registry within the limits. A transfer of the
    /// same id on this connection, or on one that is gone (its
    /// `on_disconnect` may simply not have run yet), is cut first.
    async fn register(
        &self,
        id: TransferId,
        size: u64,
        conn: &Connection,
    ) -> Result<(Arc<Active>, mpsc::Receiver<Cmd>)> {
        let stale = {
            let active = self.inner.active.lock().expect("registry lock");
            match active.get(&id) {
                // Offered again on the same connection (a sender starting
                // over after a resume that did not match), or from a new
                // connection while the old one's end is not yet reported:
                // the old attempt gives way, its partial file kept.
                Some(old) if old.conn == conn.id() || old.conn_handle.is_closed() => {
                    old.cut.cancel();
                    Some(old.exited.clone())
                }
                Some(_) => return Err(Error::InUse { id: id.to_string() }),
                None => None,
            }
        };
        if let Some(exited) = stale {
            let _ = tokio::time::timeout(EXIT_WAIT, exited.cancelled()).await;
        }
        let mut active = self.inner.active.lock().expect("registry lock");
        if active.contains_key(&id) {
            return Err(Error::InUse { id: id.to_string() });
        }
        if active.len() >= self.inner.config.max_transfers {
            return Err(Error::Busy {
                limit: self.inner.config.max_transfers,
            });
        }
        let (tx, rx) = mpsc::channel(self.inner.config.window.max(1) as usize);
        let entry = Arc::new(Active {
            size,
            conn: conn.id(),
            conn_handle: conn.clone(),
            tx,
            cancel: CancellationToken::new(),
            cut: self.inner.shutdown.child_token(),
            exited: CancellationToken::new(),
            failure: Mutex::new(None),
        });
        active.insert(id, entry.clone());
        Ok((entry, rx))
    }

    fn find(&self, id: TransferId) -> Result<Arc<Active>> {
        if let Some(active) = self.inner.active.lock().expect("registry lock").get(&id) {
            return Ok(active.clone());
        }
        let failed = self.inner.failed.lock().expect("failures lock");
        Err(match failed.iter().rev().find(|(f, _)| *f == id) {
            Some((_, (reason, message))) => Error::Refused {
                reason: *reason,
                message: message.clone(),
            },
            None => Error::Refused {
                reason: Reason::UnknownTransfer,
                message: format!("no transfer {id} is running"),
            },
        })
    }

    async fn chunk(&self, chunk: Chunk) -> Result<Control> {
        let active = self.find(chunk.id)?;
        let offset = chunk.offset;
        // What a chunk can be checked for on its own is refused here, to
        // the request that sent it; its place in the order (a duplicate, the
        // window) only the writer knows, and a violation there ends the
        // transfer.
        let len = chunk.data.len() as u64;
        if len > u64::from(self.inner.config.max_chunk) {
            return Err(Error::Protocol(Violation::ChunkTooLarge { len }));
        }
        if offset.checked_add(len).is_none_or(|end| end > active.size) {
            return Err(Error::Protocol(Violation::ChunkPastEnd { offset }));
        }
        let idle = self.inner.config.idle_timeout;
        match tokio::time::timeout(idle, active.tx.send(Cmd::Chunk(chunk))).await {
            Ok(Ok(())) => Ok(Control::Ack { offset }),
            Ok(Err(_)) => Err(failure_of(&active)),
            Err(_) => Err(Error::Stalled(idle)),
        }
    }

    async fn finish(&self, id: TransferId, hash: String) -> Result<Control> {
        let active = self.find(id)?;
        let (reply, rx) = oneshot::channel();
        // The writer answers once the file is synced and renamed; it is
        // bounded by the writer's own deadline (idle) per step.
        if active.tx.send(Cmd::Finish { hash, reply }).await.is_err() {
            return Err(failure_of(&active));
        }
        rx.await.map_err(|_| failure_of(&active))
    }

    /// Removes leftovers past the age and size limits, on the blocking
    /// pool; the offered id's own partial file stays, for its resume.
    async fn prune(&self, offered: TransferId) {
        let inner = self.inner.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let mut keep = inner.running();
            keep.insert(offered);
            let config = &inner.config;
            prune_parts(
                &inner.dir,
                &keep,
                config.max_part_age,
                config.max_part_bytes,
            )
        })
        .await;
        if let Ok(Err(e)) = pruned {
            tracing::warn!(dir = %self.inner.dir.display(), error = %e, "cannot prune partial files");
        }
    }

    async fn cancel_requested(&self, id: TransferId) -> Result<Control> {
        match self.find(id) {
            Ok(active) => {
                active.cancel.cancel();
                let _ = tokio::time::timeout(EXIT_WAIT, active.exited.cancelled()).await;
            }
            // A cut transfer's partial file: cancelling it deletes it.
            Err(_) => remove_quietly(&self.inner.dir.join(part_name(id))),
        }
        Ok(Control::Cancelled)
    }
}
impl Handler for Receiver {
    type Request = Frame;
    type Response = Frame;
    type Error = Infallible;

    async fn handle(&self, frame: Frame, conn: &Connection) -> Result<Option<Frame>, Infallible> {
        Ok(Some(Receiver::handle(self, frame, conn).await))
    }

    async fn on_disconnect(&self, conn: &Connection, _reason: &Disconnect) {
        self.disconnected(conn.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CHUNK_HEADER;
    use std::time::Duration;

    #[test]
    fn defaults_are_the_documented_ones_and_fit_a_frame() {
        let c = Config::default();
        assert_eq!(c.max_file_size, 64 << 30);
        assert_eq!((c.max_transfers, c.max_chunk, c.window), (16, 1 << 20, 8));
        assert_eq!(c.idle_timeout, Duration::from_secs(30));
        assert!(!c.overwrite && c.sync);
        assert_eq!(
            (c.max_part_age, c.max_part_bytes),
            (Duration::from_secs(86_400), 16 << 30)
        );
        // A full chunk with its header is one frame under the default limit.
        let frame = c.max_chunk as usize + CHUNK_HEADER;
        assert!(frame < enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH);
        let s = crate::sender::Config::default();
        assert_eq!((s.chunk_size, s.window), (c.max_chunk, c.window));
    }

    #[test]
    fn prepare_dir_creates_the_directory_or_says_why_not() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b/in");
        prepare_dir(&nested).unwrap();
        assert!(nested.is_dir());
        // Nothing is left behind by the check.
        assert_eq!(std::fs::read_dir(&nested).unwrap().count(), 0);

        let file = root.path().join("informe.pdf");
        std::fs::write(&file, "x").unwrap();
        let err = prepare_dir(&file.join("in")).unwrap_err();
        assert_eq!(err.reason(), Some(Reason::Storage));
        assert!(err.to_string().contains("informe.pdf/in"), "{err}");
    }

    #[test]
    fn names_from_the_network_stay_in_the_directory() {
        for good in ["a.txt", "año 2024.pdf", "x..y"] {
            let r = check_name(good);
            // `..` anywhere is refused, even where it would be harmless.
            assert_eq!(r.is_ok(), !good.contains(".."), "{good:?}");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
        assert!(check_name(&"a".repeat(255)).is_ok());
    }
}
