//! Where an upload's bytes come from, and the producer task that reads
//! them ahead in chunks, hashing as it goes.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::{Error, Result, Violation};
use crate::protocol::{reuse_chunk_buffer, sized_chunk_buffer, TransferId, CHUNK_HEADER};

/// Where an upload's bytes come from.
pub(super) enum Source {
    /// Seekable: a resume whose prefix differs starts again from byte 0.
    File(tokio::fs::File),
    /// Behind a `Mutex` only so that `Upload` is `Sync` (its `send` future
    /// can then be spawned) without asking readers to be `Sync`: it is
    /// reached through `get_mut`, never locked.
    Reader(std::sync::Mutex<Pin<Box<dyn AsyncRead + Send>>>),
    /// Handed to the producer of chunks.
    Spent,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::File(_) => "File",
            Source::Reader(_) => "Reader",
            Source::Spent => "Spent",
        })
    }
}

impl Source {
    pub(super) fn reader(&mut self) -> Result<&mut (dyn AsyncRead + Send + Unpin)> {
        match self {
            Source::File(f) => Ok(f),
            Source::Reader(r) => Ok(r.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())),
            Source::Spent => Err(Error::Protocol(Violation::SourceSpent)),
        }
    }
}
/// What a producer reads: `size - offset` bytes in chunks, hashed on top
/// of `hasher` (which holds the first `offset` bytes on a resume).
pub(super) struct Job {
    pub(super) id: TransferId,
    pub(super) offset: u64,
    pub(super) size: u64,
    pub(super) chunk: usize,
    pub(super) hasher: Digest,
}

impl Job {
    pub(super) fn new(id: TransferId, offset: u64, size: u64, chunk: usize, hasher: Digest) -> Job {
        Job {
            id,
            offset,
            size,
            chunk,
            hasher,
        }
    }

    /// Where the body's bytes still to send begin.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }
}

/// Chunk frames, ready to send, in order; an error ends them.
pub(super) type Chunks = mpsc::Receiver<Result<Bytes>>;

/// Frames read ahead of the window: two, so the producer never waits for
/// the loop and the loop never waits for a read, at 2 × chunk bytes.
pub(super) const READ_AHEAD: usize = 2;

/// The producer of a transfer's chunks; its result is the hash of the whole
/// body. Dropping it stops the producer (a task is aborted; a blocking
/// read ends at its next chunk, which no one takes).
pub(super) struct Producer {
    pub(super) handle: tokio::task::JoinHandle<Option<Digest>>,
}

impl Producer {
    pub(super) async fn finish(mut self) -> Result<Digest> {
        match (&mut self.handle).await {
            Ok(Some(hasher)) => Ok(hasher),
            // The error went down the channel, which the loop already read.
            Ok(None) => Err(Error::Protocol(Violation::ProducerEnded)),
            Err(e) => Err(Error::Source(std::io::Error::other(e))),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Buffers of answered chunks, back to the producer.
pub(super) type Recycle = mpsc::Sender<BytesMut>;

pub(super) async fn produce(
    source: Source,
    job: Job,
    window: usize,
) -> Result<(Chunks, Recycle, Producer)> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    // Room for every buffer in use: the window and what is read ahead.
    let (recycle, mut reuse) = mpsc::channel(window + READ_AHEAD + 1);
    let handle = match source {
        Source::File(file) => {
            let file = file.into_std().await;
            tokio::task::spawn_blocking(move || produce_from_file(file, job, &tx, &mut reuse))
        }
        Source::Reader(reader) => {
            let reader = reader
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            tokio::spawn(produce_from_reader(reader, job, tx, reuse))
        }
        Source::Spent => return Err(Error::Protocol(Violation::SourceSpent)),
    };
    Ok((rx, recycle, Producer { handle }))
}

/// The buffer for the next chunk of `len` bytes: an answered chunk's when
/// one came back and is large enough, else a new one.
pub(super) fn next_buffer(len: usize, reuse: &mut mpsc::Receiver<BytesMut>) -> BytesMut {
    match reuse.try_recv() {
        Ok(buf) if buf.capacity() >= CHUNK_HEADER + len => buf,
        _ => BytesMut::with_capacity(CHUNK_HEADER + len),
    }
}

/// A file, read on a blocking thread straight into each chunk's buffer.
pub(super) fn produce_from_file(
    mut file: std::fs::File,
    mut job: Job,
    tx: &mpsc::Sender<Result<Bytes>>,
    reuse: &mut mpsc::Receiver<BytesMut>,
) -> Option<Digest> {
    use std::io::{Read, Seek};
    // The async reads of a resume check may have read ahead of `offset`.
    if let Err(e) = file.seek(std::io::SeekFrom::Start(job.offset)) {
        let _ = tx.blocking_send(Err(Error::Source(e)));
        return None;
    }
    while job.offset < job.size {
        let len = job.chunk.min((job.size - job.offset) as usize);
        let mut buf = sized_chunk_buffer(next_buffer(len, reuse), job.id, job.offset, len);
        let mut got = 0;
        while got < len {
            match file.read(&mut buf[CHUNK_HEADER + got..]) {
                Ok(0) => {
                    let read = job.offset + got as u64;
                    let _ = tx.blocking_send(Err(Error::SourceEnded {
                        expected: job.size,
                        read,
                    }));
                    return None;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(Error::Source(e)));
                    return None;
                }
            }
        }
        job.hasher.update(&buf[CHUNK_HEADER..]);
        tx.blocking_send(Ok(buf.freeze())).ok()?;
        job.offset += len as u64;
    }
    Some(job.hasher)
}

/// Any reader, read on a task straight into each chunk's buffer.
pub(super) async fn produce_from_reader(
    mut reader: Pin<Box<dyn AsyncRead + Send>>,
    mut job: Job,
    tx: mpsc::Sender<Result<Bytes>>,
    mut reuse: mpsc::Receiver<BytesMut>,
) -> Option<Digest> {
    while job.offset < job.size {
        let len = job.chunk.min((job.size - job.offset) as usize);
        let mut buf = reuse_chunk_buffer(next_buffer(len, &mut reuse), job.id, job.offset);
        while buf.len() < CHUNK_HEADER + len {
            let want = (CHUNK_HEADER + len - buf.len()) as u64;
            match (&mut reader).take(want).read_buf(&mut buf).await {
                Ok(0) => {
                    let read = job.offset + (buf.len() - CHUNK_HEADER) as u64;
                    let _ = tx
                        .send(Err(Error::SourceEnded {
                            expected: job.size,
                            read,
                        }))
                        .await;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(Error::Source(e))).await;
                    return None;
                }
            }
        }
        job.hasher.update(&buf[CHUNK_HEADER..]);
        tx.send(Ok(buf.freeze())).await.ok()?;
        job.offset += len as u64;
    }
    Some(job.hasher)
}
