//! Receiving one file: the size, then the body under a temporary name,
//! each read under the idle limit and the sender's overall deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::receiver::{check_name, remove_quietly};
use crate::{Progress, TransferId};

use super::config::{Config, BUFFER, THANKS};

pub(super) async fn within<T>(
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
/// size. The whole transfer runs against [`Config::time_for`] its size,
/// counted from this call, and each read against `idle_timeout`.
///
/// # Errors
/// [`Error::BadName`]; [`Error::TooLarge`] over `max_size` (nothing is
/// read past the header); [`Error::Truncated`] when the stream ends first;
/// [`Error::Storage`] (a full disk among them); [`Error::TooSlow`] past the
/// overall deadline; [`Error::Timeout`]; [`Error::Connection`] when the
/// stream fails. In every case nothing is left
/// under `dir/name` (an existing file there is replaced only by a complete
/// one), the temporary file is removed, and no reply is sent.
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
    let start = Instant::now();
    let size = read_size(stream, config).await?;
    let path = receive_body(stream, dir, name, size, config, start, progress).await?;
    Ok((path, size))
}

/// Reads and checks the 4-byte size.
pub(super) async fn read_size<S: AsyncRead + Unpin>(
    stream: &mut S,
    config: &Config,
) -> Result<u64> {
    let mut header = [0; 4];
    let limit = config.header_time().min(config.idle_timeout);
    let got = within(
        limit,
        "the size header",
        read_full(stream, &mut header),
        Error::Connection,
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
    Ok(size)
}

/// Receives a body of `size` bytes into `dir/name` (through a temporary
/// file) and answers [`THANKS`]; the path.
pub(super) async fn receive_body<S>(
    stream: &mut S,
    dir: &Path,
    name: &str,
    size: u64,
    config: &Config,
    start: Instant,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<PathBuf>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let part = Part(dir.join(format!(".enchufe-course-{}.part", TransferId::random())));
    let dest = dir.join(name);
    let clock = Clock {
        idle: config.idle_timeout,
        deadline: config.time_for(size).map(|t| (start + t, t)),
    };
    write_body(stream, &part.0, size, &clock, progress).await?;
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
        Error::Connection,
    )
    .await?;
    Ok(dest)
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

/// A body's two limits: the idle one for each read, and the overall
/// deadline (with the time it stands for, for the error).
struct Clock {
    idle: Duration,
    deadline: Option<(Instant, Duration)>,
}

impl Clock {
    /// One read, under whichever limit comes first: one timer per read, as
    /// the idle limit alone had.
    async fn read<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        buf: &mut [u8],
        received: u64,
        expected: u64,
    ) -> Result<usize> {
        let idle_at = Instant::now() + self.idle;
        match self.deadline {
            Some((at, after)) if at < idle_at => {
                match tokio::time::timeout_at(at, stream.read(buf)).await {
                    Ok(r) => r.map_err(Error::Connection),
                    Err(_) => Err(Error::TooSlow {
                        received,
                        expected,
                        after,
                    }),
                }
            }
            _ => within(self.idle, "the body", stream.read(buf), Error::Connection).await,
        }
    }
}

async fn write_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    part: &Path,
    size: u64,
    clock: &Clock,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<()> {
    let mut file = tokio::fs::File::create(part)
        .await
        .map_err(|e| Error::storage(part, e))?;
    let mut buf = vec![0; BUFFER.min(size as usize)];
    let mut received = 0u64;
    while received < size {
        // A whole buffer per file write (tokio's file writes on a blocking
        // thread while the next buffer fills from the socket).
        let want = buf.len().min((size - received) as usize);
        let mut got = 0;
        while got < want {
            let at = received + got as u64;
            let n = clock.read(stream, &mut buf[got..want], at, size).await?;
            if n == 0 {
                return Err(Error::Truncated {
                    expected: size,
                    received: at,
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
