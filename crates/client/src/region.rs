//! A stretch of a file that ends a request's body
//! ([`Client::request_file`](crate::Client::request_file)), and the two ways
//! it leaves: `sendfile` from the page cache into a plain TCP socket, or
//! read into a buffer for every other transport.
//!
//! ```text
//!  plain TCP (Linux):  [len][mux header][head] --write-->  socket
//!                      file pages ------------sendfile--> socket   (no copy through this process)
//!  TLS, WebSocket, Unix, in memory:
//!                      file --pread (blocking pool)--> [len][mux header][head | region] --write--> transport
//! ```
//!
//! The bytes on the wire are the same either way: the other end sees one
//! ordinary frame.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

/// `len` bytes of `file` from `offset`: the end of a request's body, sent
/// from the file without passing through this process where the transport
/// allows ([`Client::request_file`](crate::Client::request_file)).
///
/// The file is shared (`Arc`), so one open file serves every chunk of a
/// transfer; reads are positioned (`pread`, `sendfile` with an offset), so
/// the file's own cursor is never moved.
#[derive(Debug, Clone)]
pub struct FileRegion {
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) len: usize,
}

impl FileRegion {
    /// The `len` bytes of `file` from `offset`. The file must hold them when
    /// the request is sent; one that has become shorter fails the request
    /// ([`Error::FileRegion`](crate::Error::FileRegion)).
    pub fn new(file: Arc<File>, offset: u64, len: usize) -> FileRegion {
        FileRegion { file, offset, len }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the file still holds the whole region (one `fstat`): a
    /// region past the file's end cannot be sent, and is refused before any
    /// of its frame is written.
    pub(crate) fn check(&self) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        let end = self.offset.saturating_add(self.len as u64);
        if size < end {
            return Err(short(size, end));
        }
        Ok(())
    }

    /// `head` then the region's bytes, read into one buffer on the blocking
    /// pool: the body of the same frame for a transport `sendfile` cannot
    /// reach.
    pub(crate) async fn read_after(self, head: Bytes) -> io::Result<Bytes> {
        let body = tokio::task::spawn_blocking(move || {
            let mut body = BytesMut::with_capacity(head.len() + self.len);
            body.put_slice(&head);
            body.resize(head.len() + self.len, 0);
            read_exact_at(&self.file, &mut body[head.len()..], self.offset)?;
            Ok::<_, io::Error>(body.freeze())
        })
        .await
        .map_err(io::Error::other)??;
        Ok(body)
    }
}

fn short(size: u64, end: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the file ends at byte {size}, before the region's end at {end}"),
    )
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            short(size, offset + buf.len() as u64)
        } else {
            e
        }
    })
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    let end = offset + buf.len() as u64;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(short(offset, end)),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes of file regions a connection has sent, by path: for tests and
/// benchmarks that prove which path a transfer took
/// ([`Client::file_region_bytes`](crate::Client::file_region_bytes)).
#[derive(Debug, Default)]
pub(crate) struct FileBytes {
    /// Sent with `sendfile`.
    pub(crate) zero_copy: AtomicU64,
    /// Read into a buffer, then written.
    pub(crate) copied: AtomicU64,
}

impl FileBytes {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> (u64, u64) {
        (
            self.zero_copy.load(Ordering::Relaxed),
            self.copied.load(Ordering::Relaxed),
        )
    }
}

/// A region being sent with `sendfile`: where the next byte comes from and
/// how many are left.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct Sending {
    region: FileRegion,
}

#[cfg(target_os = "linux")]
impl Sending {
    pub(crate) fn new(region: FileRegion) -> Sending {
        Sending { region }
    }

    /// Bytes still to send.
    pub(crate) fn left(&self) -> usize {
        self.region.len
    }

    /// Sends as much of the region as `stream` takes now. `Ready(Ok(0))`
    /// with bytes left means the file ended before the region did.
    ///
    /// A file not in the page cache is read from its disk inside the call,
    /// on the runtime's thread: regions are a chunk of a transfer (a few
    /// milliseconds of a slow disk at most), and a transfer's hash pass
    /// reads ahead of its sends.
    pub(crate) fn poll_send(
        &mut self,
        stream: &tokio::net::TcpStream,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<usize>> {
        use std::os::fd::AsFd;
        use std::task::{ready, Poll};
        loop {
            ready!(stream.poll_write_ready(cx))?;
            let mut at = i64::try_from(self.region.offset).map_err(io::Error::other)?;
            let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile64(
                    stream.as_fd(),
                    self.region.file.as_fd(),
                    Some(&mut at),
                    self.region.len,
                )
                .map_err(io::Error::from)
            });
            match sent {
                Ok(n) => {
                    self.region.offset += n as u64;
                    self.region.len -= n;
                    return Poll::Ready(Ok(n));
                }
                // `try_io` cleared the readiness: the next poll waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// The error for a file that ended before the region did.
    pub(crate) fn ended_early(&self) -> io::Error {
        let size = self.region.file.metadata().map(|m| m.len()).unwrap_or(0);
        short(size, self.region.offset + self.region.len as u64)
    }
}
