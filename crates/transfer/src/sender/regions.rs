//! A file's chunks sent from the file itself: each chunk is a request whose
//! body is its header and then a region of the file
//! ([`Client::request_file`]), which a plain TCP connection sends with
//! `sendfile` and every other transport reads into a buffer. The hash
//! (XXH3-128, for `finish`) is a pass of its own over the file, on the
//! blocking pool, side by side with the sends.
//!
//! ```text
//!  this task:     request_file(head, region) x window ──> Ack, Ack, ...
//!  blocking pool: read 256 KiB, hash, read, hash, ...   (one buffer; pages
//!                                                        cached for sendfile)
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use enchufe_client::{Client, FileRegion};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::source::Job;
use super::{unexpected, Ahead, Upload};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::protocol::{chunk_head, Control, Frame, FrameKind};
use crate::Progress;

/// The hash pass's buffer: large enough that a read costs little next to
/// hashing it, small enough to stay in the CPU's cache (XXH3 then reads it
/// from there, not from memory).
const HASH_READ: usize = 256 << 10;

impl Upload {
    /// Sends `job`'s chunks from `file` with `window` in flight while a
    /// pass over the same bytes hashes them: the hash of the whole body.
    pub(super) async fn send_regions(
        &self,
        client: &Client,
        cancel: &CancellationToken,
        file: Arc<File>,
        job: Job,
        window: usize,
    ) -> Result<Digest> {
        let (id, size, chunk) = (job.id, job.size, job.chunk as u64);
        let mut next = job.offset;
        let mut acked = job.offset;
        let mut hashing = HashPass::start(file.clone(), job);
        let mut hashed = None;
        let mut in_flight: FuturesUnordered<_> = FuturesUnordered::new();
        let mut ahead = Ahead::new(window, chunk);
        while next < size || !in_flight.is_empty() || hashed.is_none() {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Error::Cancelled),
                // A file that shrank is told here first, as the hash pass
                // reaches its end (the sends may still be behind).
                digest = &mut hashing.handle, if hashed.is_none() => {
                    hashed = Some(digest.map_err(|e| Error::Source(std::io::Error::other(e)))??);
                }
                Some((reply, at, len)) = in_flight.next(), if !in_flight.is_empty() => {
                    let reply: Frame = reply?;
                    match reply.0 {
                        FrameKind::Control(Control::Ack { .. }) => {}
                        other => return Err(unexpected(other)),
                    }
                    ahead.acked(at);
                    acked += len;
                    self.progress.send_replace(Progress {
                        done: acked,
                        total: size,
                    });
                }
                () = std::future::ready(()), if next < size && ahead.allows(next) => {
                    let len = chunk.min(size - next);
                    let region = FileRegion::new(file.clone(), next, len as usize);
                    let head = chunk_head(id, next);
                    let at = next;
                    let file = &file;
                    in_flight.push(async move {
                        let reply: Result<Frame> = client
                            .request_file(head, region)
                            .await
                            .map_err(|e| chunk_failed(e, file, size));
                        (reply, at, len)
                    });
                    ahead.sent(next);
                    next += len;
                }
            }
        }
        // `hashed` is set: the loop runs until it is.
        hashed.ok_or(Error::Protocol(crate::error::Violation::ProducerEnded))
    }
}

/// Why a chunk failed: the file shrank under the transfer (told by its size
/// now, whichever way the send noticed), its region could not be read, or
/// the connection failed.
fn chunk_failed(e: enchufe_client::Error, file: &File, size: u64) -> Error {
    match file.metadata() {
        Ok(meta) if meta.len() < size => Error::SourceEnded {
            expected: size,
            read: meta.len(),
        },
        _ => match e {
            enchufe_client::Error::FileRegion(source) => Error::Source(source),
            other => Error::Client(other),
        },
    }
}

/// The hash pass: reads the file from the job's offset to its size into
/// one reused buffer on the blocking pool, hashing on top of the job's
/// hasher (the prefix's, on a resume). Dropped, it stops at its next read.
struct HashPass {
    handle: tokio::task::JoinHandle<Result<Digest>>,
    stop: Arc<AtomicBool>,
}

impl HashPass {
    fn start(file: Arc<File>, job: Job) -> HashPass {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = tokio::task::spawn_blocking(move || hash_file(&file, job, &stopped));
        HashPass { handle, stop }
    }
}

impl Drop for HashPass {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn hash_file(file: &File, mut job: Job, stop: &AtomicBool) -> Result<Digest> {
    // The pass alone moves the file's cursor: the sends read at offsets.
    let mut reader = file;
    reader
        .seek(SeekFrom::Start(job.offset))
        .map_err(Error::Source)?;
    let mut buf = vec![0; HASH_READ];
    while job.offset < job.size {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let want = buf.len().min((job.size - job.offset) as usize);
        match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Error::SourceEnded {
                    expected: job.size,
                    read: job.offset,
                })
            }
            Ok(n) => {
                job.hasher.update(&buf[..n]);
                job.offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Source(e)),
        }
    }
    Ok(job.hasher)
}
