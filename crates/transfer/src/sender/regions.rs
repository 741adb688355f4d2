//! A file's chunks sent from the file itself: each chunk is a request whose
//! body is its header and then a region of the file
//! ([`Client::request_file`]), which a plain TCP connection sends with
//! `sendfile` and every other transport reads into a buffer. The hash
//! (XXH3-128, for `finish`) is a pass of its own over the file, on the
//! blocking pool, two chunks ahead of the sends: a chunk goes once it is
//! hashed.
//!
//! ```text
//!  this task:     request_file(head, region) x window ──> Ack, Ack, ...
//!                    ^ chunk k once hashed     | "hash up to chunk k+2"
//!  blocking pool: read 256 KiB, hash, read, hash, ...   (one buffer)
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use enchufe_client::{Client, FileRegion};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
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

/// Chunks the hash pass reads ahead of the sends: two, so that it hashes
/// the next chunk while one goes out, and the pages it read are still in
/// the CPU's cache when the receiver copies them (on loopback).
const HASH_LEAD: u64 = 2;

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
        // Bytes the pass has hashed, and asked to.
        let mut hashed_to = next;
        let mut asked = next;
        let mut in_flight: FuturesUnordered<_> = FuturesUnordered::new();
        let mut ahead = Ahead::new(window, chunk);
        while next < size || !in_flight.is_empty() || hashed.is_none() {
            // The pass keeps [`HASH_LEAD`] chunks ahead of the sends, no
            // further: a chunk's pages are read for the hash just before
            // `sendfile` hands them to the socket, so on loopback the
            // receiver copies them from the CPU's cache, not from memory.
            let want = next.saturating_add(HASH_LEAD * chunk).min(size);
            if want > asked {
                asked = want;
                // Gone only once the pass has ended; its handle says why.
                let _ = hashing.want.send(want);
            }
            let end = next + chunk.min(size.saturating_sub(next));
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Error::Cancelled),
                // A file that shrank is told here first, as the hash pass
                // reaches its end (the sends may still be behind).
                digest = &mut hashing.handle, if hashed.is_none() => {
                    hashed = Some(digest.map_err(|e| Error::Source(std::io::Error::other(e)))??);
                    hashed_to = size;
                }
                Ok(()) = hashing.done.changed(), if hashed_to < end => {
                    hashed_to = *hashing.done.borrow_and_update();
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
                () = std::future::ready(()), if next < size && hashed_to >= end && ahead.allows(next) => {
                    let len = end - next;
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
/// hasher (the prefix's, on a resume), as far as it is asked to go
/// (`want`) and saying how far it got (`done`). Dropped, it stops once it
/// has read what it was asked.
struct HashPass {
    handle: tokio::task::JoinHandle<Result<Digest>>,
    want: std::sync::mpsc::Sender<u64>,
    done: watch::Receiver<u64>,
}

impl HashPass {
    fn start(file: Arc<File>, job: Job) -> HashPass {
        let (want, asked) = std::sync::mpsc::channel();
        let (told, done) = watch::channel(job.offset);
        let handle = tokio::task::spawn_blocking(move || hash_file(&file, job, &asked, &told));
        HashPass { handle, want, done }
    }
}

fn hash_file(
    file: &File,
    mut job: Job,
    asked: &std::sync::mpsc::Receiver<u64>,
    told: &watch::Sender<u64>,
) -> Result<Digest> {
    // The pass alone moves the file's cursor: the sends read at offsets.
    let mut reader = file;
    reader
        .seek(SeekFrom::Start(job.offset))
        .map_err(Error::Source)?;
    let mut buf = vec![0; HASH_READ];
    let mut target = job.offset;
    while job.offset < job.size {
        while job.offset >= target {
            // Waits for the sends; their end (the pass dropped) stops it.
            target = asked.recv().map_err(|_| Error::Cancelled)?.min(job.size);
        }
        let want = buf.len().min((target - job.offset) as usize);
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
                if job.offset == target {
                    told.send_replace(job.offset);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Source(e)),
        }
    }
    Ok(job.hasher)
}
