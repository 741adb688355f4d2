//! The course's improved file protocol, byte for byte, with bounded memory.
//!
//! ```text
//!  sender -> receiver:  size (u32 BE) | body (exactly `size` bytes)
//!  receiver -> sender:  "Gracias."     (8 raw UTF-8 bytes, no length prefix)
//! ```
//!
//! The course's scripts hold the whole file in memory; these helpers
//! stream it in chunks of [`BUFFER`] bytes. The receiver writes to a
//! temporary name and renames only once every declared byte arrived, so a
//! cut body never leaves a file under its final name. The protocol has no
//! hash: TCP's checksum is all the integrity it gets.
//!
//! ```
//! use enchufe::transfer::course;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), enchufe::transfer::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let (mut a, mut b) = tokio::io::duplex(64 << 10);
//! let config = course::Config::default();
//! let recv = course::receive(&mut b, dir.path(), "recibido.bin", &config, None);
//! let send = course::send(&mut a, &b"hola"[..], 4, &config, None);
//! let (path, reply) = tokio::try_join!(recv, send)?;
//! assert_eq!(reply, course::THANKS);
//! assert_eq!(std::fs::read(path.0).unwrap(), b"hola");
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::receiver::{check_name, remove_quietly};
use crate::{Progress, TransferId};

/// The receiver's answer: `"Gracias."` in UTF-8, not length-prefixed.
pub const THANKS: &[u8] = b"Gracias.";

/// Bytes moved per file read or write: large enough that the hops to
/// tokio's blocking threads for file I/O (one per read or write) do not
/// dominate, as they did at 256 KiB (a fifth of both ends' CPU in context
/// switches). A transfer holds two of them, plus tokio's own file buffer.
pub const BUFFER: usize = 1 << 20;

/// Limits of the course protocol's two ends.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest declared size the receiver accepts. Default 1 GiB (the
    /// header allows up to 4 GiB − 1, which a receiver need not accept
    /// from anyone who connects).
    pub max_size: u64,
    /// The longest wait for the next bytes of the size or the body.
    /// Default 30 s.
    pub idle_timeout: Duration,
    /// The longest wait for (or to write) the `Gracias.` reply. Default 30 s.
    pub reply_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: 1 << 30,
            idle_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Sets [`Config::max_size`].
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }
    /// Sets [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
    wrap: impl FnOnce(std::io::Error) -> Error,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(wrap),
        Err(_) => Err(Error::Timeout { what, after: limit }),
    }
}

/// Receives one file: reads the size and exactly that many bytes, saves
/// them as `dir/name` and answers [`THANKS`]. Returns the path and the
/// size.
///
/// # Errors
/// [`Error::BadName`]; [`Error::TooLarge`] over `max_size` (nothing is
/// read past the header); [`Error::Truncated`] when the stream ends first;
/// [`Error::Storage`] (a full disk among them); [`Error::Timeout`]. In every
/// case nothing is left under `dir/name` (an existing file there is
/// replaced only by a complete one), the temporary file is removed, and no
/// reply is sent.
///
/// # Cancel safety
/// Dropping the future mid-body removes the temporary file too.
pub async fn receive<S>(
    stream: &mut S,
    dir: &Path,
    name: &str,
    config: &Config,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(PathBuf, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    check_name(name)?;
    let idle = config.idle_timeout;
    let mut header = [0; 4];
    let got = within(
        idle,
        "the size header",
        read_full(stream, &mut header),
        Error::Source,
    )
    .await?;
    if got < 4 {
        return Err(Error::Truncated {
            expected: 4,
            received: got as u64,
        });
    }
    let size = u64::from(u32::from_be_bytes(header));
    if size > config.max_size {
        return Err(Error::TooLarge {
            size,
            limit: config.max_size,
        });
    }
    let part = Part(dir.join(format!(".enchufe-course-{}.part", TransferId::random())));
    let dest = dir.join(name);
    receive_body(stream, &part.0, size, idle, progress).await?;
    tokio::fs::rename(&part.0, &dest)
        .await
        .map_err(|e| Error::storage(&dest, e))?;
    let reply = async {
        stream.write_all(THANKS).await?;
        stream.flush().await
    };
    within(
        config.reply_timeout,
        "the reply to be written",
        reply,
        Error::Source,
    )
    .await?;
    Ok((dest, size))
}

/// The temporary file of a body being received, removed unless it was
/// renamed: on an error, and when the future is dropped (the receiver
/// stopped mid-body), so nothing is left behind.
struct Part(PathBuf);

impl Drop for Part {
    fn drop(&mut self) {
        remove_quietly(&self.0);
    }
}

async fn receive_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    part: &Path,
    size: u64,
    idle: Duration,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<()> {
    let mut file = tokio::fs::File::create(part)
        .await
        .map_err(|e| Error::storage(part, e))?;
    let mut buf = vec![0; BUFFER];
    let mut received = 0u64;
    while received < size {
        // A whole buffer per file write (tokio's file writes on a blocking
        // thread while the next buffer fills from the socket).
        let want = buf.len().min((size - received) as usize);
        let mut got = 0;
        while got < want {
            let n = within(
                idle,
                "the body",
                stream.read(&mut buf[got..want]),
                Error::Source,
            )
            .await?;
            if n == 0 {
                return Err(Error::Truncated {
                    expected: size,
                    received: received + got as u64,
                });
            }
            got += n;
        }
        file.write_all(&buf[..got])
            .await
            .map_err(|e| Error::storage(part, e))?;
        received += got as u64;
        if let Some(p) = progress {
            p.send_replace(Progress {
                done: received,
                total: size,
            });
        }
    }
    file.flush().await.map_err(|e| Error::storage(part, e))
}

/// Reads until `buf` is full or the stream ends; how many bytes arrived.
async fn read_full<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Sends one body: the size, exactly `size` bytes of `reader`, then shuts
/// down writing (half-close: the receiver still answers) and returns the
/// receiver's reply: at most 4096 bytes, as the course's `recv(4096)`, read
/// until the receiver closes or the reply is [`THANKS`] (a receiver that
/// keeps the connection open after answering is not waited for).
///
/// # Errors
/// [`Error::TooLarge`] when `size` does not fit the 4-byte header;
/// [`Error::Source`] / [`Error::SourceEnded`] for the reader;
/// [`Error::Protocol`] when the connection fails; [`Error::Timeout`].
pub async fn send<S, R>(
    stream: &mut S,
    reader: R,
    size: u64,
    config: &Config,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let limit = u64::from(u32::MAX);
    if size > limit {
        return Err(Error::TooLarge { size, limit });
    }
    let net = |e: std::io::Error| Error::Protocol(format!("connection: {e}"));
    let idle = config.idle_timeout;
    let header = (size as u32).to_be_bytes();
    within(
        idle,
        "the size header to be written",
        stream.write_all(&header),
        net,
    )
    .await?;
    let mut reader = reader.take(size);
    // Two buffers: one is written to the socket while the next is read.
    let (mut current, mut next) = (vec![0; BUFFER], vec![0; BUFFER]);
    let mut filled = reader.read(&mut current).await.map_err(Error::Source)?;
    let mut sent = 0u64;
    while sent < size {
        if filled == 0 {
            return Err(Error::SourceEnded {
                expected: size,
                read: sent,
            });
        }
        let more = sent + (filled as u64) < size;
        // The idle limit is per write call, as per read on the receiver: a
        // slow link that keeps taking bytes is not cut for taking 1 MiB
        // slowly.
        let piece = &current[..filled];
        let write = async {
            let mut at = 0;
            while at < piece.len() {
                let write = stream.write(&piece[at..]);
                match within(idle, "the body to be written", write, net).await? {
                    0 => return Err(net(std::io::ErrorKind::WriteZero.into())),
                    n => at += n,
                }
            }
            Ok(())
        };
        let read = async {
            if more {
                reader.read(&mut next).await
            } else {
                Ok(0)
            }
        };
        let (written, read) = tokio::join!(write, read);
        written?;
        sent += filled as u64;
        filled = read.map_err(Error::Source)?;
        std::mem::swap(&mut current, &mut next);
        if let Some(p) = progress {
            p.send_replace(Progress {
                done: sent,
                total: size,
            });
        }
    }
    within(idle, "the half-close", stream.shutdown(), net).await?;
    let mut reply = vec![0; 4096];
    let read = async {
        let mut got = 0;
        while got < reply.len() && reply[..got] != *THANKS {
            match stream.read(&mut reply[got..]).await? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    };
    let got = within(config.reply_timeout, "the reply", read, net).await?;
    reply.truncate(got);
    Ok(reply)
}
