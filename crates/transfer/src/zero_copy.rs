//! A file's bytes between the page cache and a TCP socket without passing
//! through this process, on Linux: `sendfile` from a file into the socket,
//! `splice` from the socket through a pipe into a file.
//!
//! ```text
//!  sender:    page cache ──sendfile──> socket        (pages referenced, not copied, on loopback)
//!  receiver:  socket ──splice──> pipe ──splice──> file page cache   (one copy, the last step)
//! ```
//!
//! A plain loop moves every byte four times (page cache → sender's buffer
//! → socket → receiver's buffer → page cache); these move it once on
//! loopback and twice over a network card. Everything here works on
//! tokio's non-blocking `TcpStream` through its readiness, so the deadlines
//! around each call stay the caller's; other streams (TLS, Unix sockets,
//! in-memory pipes) and other systems keep the portable path.
//!
//! The calls go through `nix`, which wraps the system calls safely (the
//! workspace forbids `unsafe`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Sends bytes of `file` from `*offset`, at most `len`, as many as the
/// socket takes once it is writable; advances `*offset`. `Ok(0)` means the
/// file ends at `*offset` (it is shorter than it was).
///
/// The file's bytes are read from the page cache by the kernel: a file not
/// in the cache is read from its disk inside the call, on the runtime's
/// thread, so callers keep `len` to a chunk (a few milliseconds of a slow
/// disk).
///
/// # Cancel safety
/// Cancel safe: nothing is sent unless the call returns.
pub(crate) async fn send_file(
    stream: &TcpStream,
    file: &File,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut at = i64::try_from(*offset).map_err(io::Error::other)?;
    loop {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile64(stream.as_fd(), file.as_fd(), Some(&mut at), len)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(n) => {
                *offset += n as u64;
                return Ok(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A pipe that carries bytes from a socket to a file inside the kernel,
/// with how many it holds.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe, not yet in the file.
    held: usize,
    /// The pipe's capacity in bytes.
    capacity: usize,
}

/// What one [`Pipe::fill`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Moved this many bytes from the socket into the pipe.
    Moved(usize),
    /// The peer closed its side: no more bytes will come.
    End,
    /// The pipe takes no more now (its slots are full, even below its
    /// byte capacity: each slot holds one piece of a packet), or the socket
    /// has nothing: either way, drain it into the file.
    Full,
}

impl Pipe {
    /// A pipe of `capacity` bytes, or as close as the system allows
    /// (`/proc/sys/fs/pipe-max-size`, 1 MiB by default, bounds it for
    /// unprivileged processes; a refused size keeps the default 64 KiB).
    pub(crate) fn new(capacity: usize) -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let wanted = i32::try_from(capacity).unwrap_or(i32::MAX);
        let capacity = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(wanted)) {
            Ok(n) => n,
            Err(_) => fcntl(&write, FcntlArg::F_GETPIPE_SZ)?,
        };
        Ok(Pipe {
            read,
            write,
            held: 0,
            capacity: usize::try_from(capacity).unwrap_or(0).max(1),
        })
    }

    /// Bytes in the pipe, not yet in the file.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Room left, in bytes.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.held)
    }

    /// Moves up to `len` bytes from `stream` into the pipe, waiting for the
    /// socket to have some while the pipe is empty.
    ///
    /// The socket's readiness is cleared only when the pipe is empty: a
    /// `splice` that cannot go on then means the socket has nothing (an
    /// empty pipe always has room). With bytes in the pipe it may instead
    /// mean the pipe's slots are full, and clearing the readiness of a
    /// socket that still holds bytes would wait for an event that never
    /// comes; the caller drains the pipe instead ([`Fill::Full`]).
    ///
    /// # Cancel safety
    /// Cancel safe: bytes moved are counted before the call returns.
    pub(crate) async fn fill(&mut self, stream: &TcpStream, len: usize) -> io::Result<Fill> {
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
        loop {
            let (read, write) = (stream.as_fd(), self.write.as_fd());
            let moved = if self.held == 0 {
                stream.readable().await?;
                stream.try_io(Interest::READABLE, || {
                    splice(read, None, write, None, len, flags).map_err(io::Error::from)
                })
            } else {
                splice(read, None, write, None, len, flags).map_err(io::Error::from)
            };
            match moved {
                Ok(0) => return Ok(Fill::End),
                Ok(n) => {
                    self.held += n;
                    return Ok(Fill::Moved(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.held > 0 {
                        return Ok(Fill::Full);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves everything the pipe holds into `file` at its current offset:
    /// a blocking call (the file's page cache, or its disk under writeback
    /// pressure), for the blocking pool.
    pub(crate) fn drain_into(&mut self, file: &File) -> io::Result<()> {
        while self.held > 0 {
            let flags = SpliceFFlags::SPLICE_F_MOVE;
            match splice(&self.read, None, file, None, self.held, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.held -= n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = TcpStream::connect(listener.local_addr().unwrap());
        let (a, b) = tokio::join!(connect, listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[tokio::test]
    async fn a_file_goes_through_sendfile_and_splice_unchanged() {
        let limit = std::time::Duration::from_secs(20);
        tokio::time::timeout(limit, async {
            let dir = tempfile::tempdir().unwrap();
            let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let mut source = File::create_new(dir.path().join("a")).unwrap();
            source.write_all(&data).unwrap();
            let source = File::open(dir.path().join("a")).unwrap();
            let mut sink = File::create_new(dir.path().join("b")).unwrap();
            let (tx, rx) = pair().await;

            let send = async {
                // From an offset: the first 1,000 bytes stay behind.
                let mut offset = 1_000;
                while offset < data.len() as u64 {
                    assert!(send_file(&tx, &source, &mut offset, 1 << 20).await.unwrap() > 0);
                }
                assert_eq!(
                    send_file(&tx, &source, &mut offset, 1 << 20).await.unwrap(),
                    0
                );
                drop(tx);
            };
            let recv = async {
                let mut pipe = Pipe::new(1 << 20).unwrap();
                assert!(pipe.room() >= 64 << 10);
                loop {
                    let room = pipe.room();
                    match pipe.fill(&rx, room).await.unwrap() {
                        Fill::End => break,
                        Fill::Moved(_) if pipe.room() > 0 => continue,
                        _ => pipe.drain_into(&sink).unwrap(),
                    }
                }
                pipe.drain_into(&sink).unwrap();
                assert_eq!(pipe.held(), 0);
            };
            tokio::join!(send, recv);
            let mut got = Vec::new();
            sink.rewind().unwrap();
            sink.read_to_end(&mut got).unwrap();
            assert!(got == data[1_000..], "{} bytes", got.len());
        })
        .await
        .expect("not hung");
    }

    #[tokio::test]
    async fn a_closed_socket_ends_the_fill_and_a_broken_one_fails_sendfile() {
        let (mut tx, rx) = pair().await;
        tx.write_all(b"hola").await.unwrap();
        tx.shutdown().await.unwrap();
        let mut pipe = Pipe::new(1 << 16).unwrap();
        assert_eq!(pipe.fill(&rx, 100).await.unwrap(), Fill::Moved(4));
        assert_eq!(pipe.fill(&rx, 100).await.unwrap(), Fill::End);
        drop(rx);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![1; 8 << 20]).unwrap();
        let file = File::open(dir.path().join("f")).unwrap();
        let mut offset = 0;
        let limit = std::time::Duration::from_secs(20);
        let sent = tokio::time::timeout(limit, async {
            loop {
                if let Err(e) = send_file(&tx, &file, &mut offset, 1 << 20).await {
                    return e;
                }
            }
        });
        let e = sent.await.expect("not hung");
        assert!(crate::error::is_gone(&e), "{e}");
    }
}
