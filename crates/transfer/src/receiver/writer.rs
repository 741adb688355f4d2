//! The writer task of one transfer: chunks reordered by offset, hashed and
//! written in batches on the blocking pool, then checked and put in place.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::digest::Digest;
use crate::error::{Error, Result, Violation, ENOSPC};
use crate::protocol::{Control, TransferId};
use crate::Progress;

use super::event::Event;
use super::leftovers::evict_oldest;
use super::names::remove_quietly;
use super::registry::{Active, Cmd, Inner, RECENT};

/// One transfer's task: owns the file, the running hash and the reorder
/// buffer.
pub(super) struct Writer {
    pub(super) inner: Arc<Inner>,
    pub(super) active: Arc<Active>,
    pub(super) id: TransferId,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) dest: PathBuf,
    pub(super) part: PathBuf,
}

/// The file and the hash of everything written to it, moved to the
/// blocking pool for each write and back.
pub(super) struct Sink {
    file: std::fs::File,
    hasher: Digest,
}

/// How a writer ended, and whether its partial file stays.
pub(super) enum End {
    Done(PathBuf, String),
    Failed(Error, Keep),
}

#[derive(PartialEq)]
pub(super) enum Keep {
    Partial,
    Nothing,
}

impl Writer {
    pub(super) async fn run(
        self,
        restart: bool,
        mut rx: mpsc::Receiver<Cmd>,
        accept: oneshot::Sender<Result<Control>>,
    ) {
        let end = match self.open(restart).await {
            Ok((sink, offset)) => {
                let config = &self.inner.config;
                let prefix_hash = sink.hasher.hex();
                let (progress, progress_rx) = watch::channel(Progress {
                    done: offset,
                    total: self.size,
                });
                let _ = self.inner.events.send(Event::Started {
                    id: self.id,
                    name: self.name.clone(),
                    size: self.size,
                    offset,
                    progress: progress_rx,
                });
                let _ = accept.send(Ok(Control::Accept {
                    offset,
                    prefix_hash,
                    max_chunk: config.max_chunk,
                    window: config.window,
                }));
                self.receive(sink, offset, &mut rx, progress).await
            }
            Err(e) => {
                let (reason, message) = e.to_refusal();
                let _ = accept.send(Err(Error::Refused { reason, message }));
                End::Failed(e, Keep::Partial)
            }
        };
        // `rx` lives until the failure is recorded, so a request that finds
        // the queue closed always finds the reason too.
        self.end(end);
        drop(rx);
    }

    /// Opens (or reopens) the partial file and hashes what it holds.
    async fn open(&self, restart: bool) -> Result<(Sink, u64)> {
        let part = self.part.clone();
        let size = self.size;
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<(Sink, u64)> {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&part)?;
            let mut held = file.metadata()?.len();
            if restart || held > size {
                file.set_len(0)?;
                held = 0;
            }
            let mut hasher = Digest::new();
            std::io::copy(&mut (&mut file).take(held), &mut hasher)?;
            file.seek(std::io::SeekFrom::Start(held))?;
            Ok((Sink { file, hasher }, held))
        })
        .await
        .map_err(|e| Error::Protocol(Violation::WriterFailed(e)))?;
        opened.map_err(|e| Error::storage(&self.part, e))
    }

    async fn receive(
        &self,
        sink: Sink,
        mut next: u64,
        rx: &mut mpsc::Receiver<Cmd>,
        progress: watch::Sender<Progress>,
    ) -> End {
        let config = &self.inner.config;
        let ahead = u64::from(config.window.max(1)) * u64::from(config.max_chunk);
        let mut sink = Some(sink);
        let mut pending: BTreeMap<u64, Bytes> = BTreeMap::new();
        loop {
            let cmd = tokio::select! {
                biased;
                () = self.active.cancel.cancelled() => {
                    return End::Failed(Error::Cancelled, Keep::Nothing);
                }
                () = self.active.cut.cancelled() => {
                    return End::Failed(Error::Interrupted, Keep::Partial);
                }
                cmd = tokio::time::timeout(config.idle_timeout, rx.recv()) => cmd,
            };
            match cmd {
                Err(_) => return End::Failed(Error::Stalled(config.idle_timeout), Keep::Partial),
                Ok(None) => return End::Failed(Error::Interrupted, Keep::Partial),
                Ok(Some(Cmd::Chunk(chunk))) => {
                    let offset = chunk.offset;
                    let violation = if offset < next || pending.contains_key(&offset) {
                        Some(Violation::ChunkTwice { offset })
                    } else if offset >= next + ahead {
                        Some(Violation::ChunkBeyondWindow { offset })
                    } else {
                        None
                    };
                    if let Some(violation) = violation {
                        return End::Failed(Error::Protocol(violation), Keep::Partial);
                    }
                    pending.insert(chunk.offset, chunk.data);
                    let mut batch = Vec::new();
                    while let Some(data) = pending.remove(&next) {
                        next += data.len() as u64;
                        batch.push(data);
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    let at = next - batch.iter().map(|b| b.len() as u64).sum::<u64>();
                    let sink_back = sink.take().expect("sink is back after each write");
                    match write(sink_back, batch, at, self.evictor()).await {
                        Ok(back) => sink = Some(back),
                        Err(e) => return End::Failed(Error::storage(&self.part, e), Keep::Nothing),
                    }
                    progress.send_replace(Progress {
                        done: next,
                        total: self.size,
                    });
                }
                Ok(Some(Cmd::Finish { hash, reply })) => {
                    let end = self.finish(sink.take().expect("sink"), next, &hash).await;
                    let answer = match &end {
                        End::Done(..) => Control::Done { size: self.size },
                        End::Failed(e, _) => {
                            let (reason, message) = e.to_refusal();
                            Control::Refused { reason, message }
                        }
                    };
                    // The registry entry goes before the answer, so a sender
                    // that offers the same id at once is not told "in use".
                    self.unregister();
                    let _ = reply.send(answer);
                    return end;
                }
            }
        }
    }

    async fn finish(&self, sink: Sink, received: u64, hash: &str) -> End {
        if received != self.size {
            let e = Error::Truncated {
                expected: self.size,
                received,
            };
            return End::Failed(e, Keep::Partial);
        }
        let actual = sink.hasher.hex();
        if actual != hash {
            let e = Error::HashMismatch {
                expected: hash.to_owned(),
                actual,
            };
            return End::Failed(e, Keep::Nothing);
        }
        let (part, dest) = (self.part.clone(), self.dest.clone());
        let (sync, overwrite) = (self.inner.config.sync, self.inner.config.overwrite);
        let placed =
            tokio::task::spawn_blocking(move || place(sink.file, &part, &dest, sync, overwrite))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match placed {
            Ok(()) => End::Done(self.dest.clone(), actual),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => End::Failed(
                Error::Exists {
                    name: self.name.clone(),
                },
                Keep::Nothing,
            ),
            Err(e) => End::Failed(Error::storage(&self.dest, e), Keep::Nothing),
        }
    }

    /// What a write calls on a full disk: removes the oldest leftover (never
    /// a running transfer's file); whether it removed one.
    fn evictor(&self) -> impl Fn() -> bool + Send + 'static {
        let inner = self.inner.clone();
        move || evict_oldest(&inner.dir, &inner.running())
    }

    fn unregister(&self) {
        let mut active = self.inner.active.lock().expect("registry lock");
        if active
            .get(&self.id)
            .is_some_and(|a| Arc::ptr_eq(a, &self.active))
        {
            active.remove(&self.id);
        }
    }

    fn end(self, end: End) {
        let event = match end {
            End::Done(path, hash) => {
                tracing::info!(id = %self.id, path = %path.display(), size = self.size, "transfer done");
                Event::Finished {
                    id: self.id,
                    path,
                    size: self.size,
                    hash,
                }
            }
            End::Failed(error, keep) => {
                if keep == Keep::Nothing {
                    remove_quietly(&self.part);
                }
                tracing::info!(id = %self.id, name = %self.name, %error, "transfer ended without a file");
                *self.active.failure.lock().expect("failure lock") = Some(error.to_refusal());
                let mut failed = self.inner.failed.lock().expect("failures lock");
                if failed.len() == RECENT {
                    failed.pop_front();
                }
                failed.push_back((self.id, error.to_refusal()));
                drop(failed);
                Event::Failed {
                    id: self.id,
                    name: self.name.clone(),
                    error: Arc::new(error),
                }
            }
        };
        self.unregister();
        self.active.exited.cancel();
        let _ = self.inner.events.send(event);
    }
}

/// Hashes and writes a batch of in-order chunks (from offset `at`) on the
/// blocking pool, the hash and the write side by side on two threads (the
/// chunks are shared, not copied): a batch costs the longer of the two, not
/// their sum. On a full disk, `evict` makes room and the batch is written
/// again from `at`, until it fits or nothing is left to evict.
pub(super) async fn write(
    sink: Sink,
    batch: Vec<Bytes>,
    at: u64,
    evict: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<Sink> {
    let Sink {
        mut file,
        mut hasher,
    } = sink;
    let for_hash = batch.clone();
    let hashed = tokio::task::spawn_blocking(move || {
        for data in &for_hash {
            hasher.update(data);
        }
        hasher
    });
    let written = tokio::task::spawn_blocking(move || loop {
        match batch.iter().try_for_each(|data| file.write_all(data)) {
            Err(e) if e.raw_os_error() == Some(ENOSPC) && evict() => {
                file.seek(std::io::SeekFrom::Start(at))?;
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok::<_, std::io::Error>((file, batch)),
        }
    });
    let (hashed, written) = tokio::join!(hashed, written);
    let lost = |e: tokio::task::JoinError| std::io::Error::other(e);
    let hasher = hashed.map_err(lost)?; // drops the hash's handles to the chunks
    let (file, batch) = written.map_err(lost)??;
    // Each chunk's buffer, now written and hashed, goes back for the next
    // chunk's frame: no allocation and no page faults per chunk.
    for data in batch {
        enchufe_framing::recycle::give_back(data);
    }
    Ok(Sink { file, hasher })
}

/// Syncs the finished file and gives it its final name: a rename when
/// overwriting, else a hard link (which fails if the name is taken: no
/// window where another file could be replaced) and the temporary's removal.
pub(super) fn place(
    file: std::fs::File,
    part: &Path,
    dest: &Path,
    sync: bool,
    overwrite: bool,
) -> std::io::Result<()> {
    if sync {
        file.sync_all()?;
    }
    drop(file);
    if overwrite {
        std::fs::rename(part, dest)
    } else {
        std::fs::hard_link(part, dest)?;
        std::fs::remove_file(part)
    }
}
