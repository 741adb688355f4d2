//! Sending one file: the size, the body, then waiting for `Gracias.`.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::error::{is_gone, open_to_send, Error, Result};
use crate::AddrError;
use crate::Progress;

use super::config::{Config, BUFFER, THANKS};
use super::receive::within;

/// Sends the file at `path` to the course receiver at `addr` (`HOST:PORT`)
/// and returns its size once the receiver answered [`THANKS`]. The file is
/// opened before connecting, so a missing file costs the receiver nothing.
/// On Linux the body goes from the page cache to the socket with
/// `sendfile`, never through this process's memory.
///
/// # Errors
/// [`Error::Open`] naming the file; [`Error::Connect`] naming the address;
/// [`Error::NotConfirmed`] when the receiver closes without `Gracias.` (it
/// refused the file or could not store it); the errors of [`send`].
pub async fn send_file(
    path: impl AsRef<Path>,
    addr: &str,
    config: &Config,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<u64> {
    let path = path.as_ref();
    let (file, meta) = open_to_send(path).await?;
    let size = meta.len();
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| Error::Connect(AddrError::new(addr, source)))?;
    #[cfg(target_os = "linux")]
    let reply = {
        let file = file.into_std().await;
        write_header(&mut stream, size, config).await?;
        send_file_body(&stream, &file, size, config, progress).await?;
        read_reply(&mut stream, size, config).await?
    };
    #[cfg(not(target_os = "linux"))]
    let reply = send(&mut stream, file, size, config, progress).await?;
    if reply != THANKS {
        return Err(Error::NotConfirmed {
            sent: size,
            size,
            reply,
        });
    }
    Ok(size)
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
/// [`Error::NotConfirmed`] when the receiver closes or resets the
/// connection before it has the body (it refused it or could not store
/// it); [`Error::Connection`] when the connection fails otherwise;
/// [`Error::Timeout`].
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
    write_header(stream, size, config).await?;
    let idle = config.idle_timeout;
    let mut reader = reader.take(size);
    // Two buffers: one is written to the socket while the next is read.
    let room = BUFFER.min(size as usize).max(1);
    let (mut current, mut next) = (vec![0; room], vec![0; room]);
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
                let wrote = gone_means_refused(sent + at as u64, size);
                match within(idle, "the body to be written", write, wrote).await? {
                    0 => return Err(Error::Connection(std::io::ErrorKind::WriteZero.into())),
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
        report(progress, sent, size);
    }
    read_reply(stream, size, config).await
}

/// A receiver that cannot take the file closes: the sender sees a broken
/// pipe or a reset, which is the receiver's answer, not a network fault.
fn gone_means_refused(sent: u64, size: u64) -> impl FnOnce(std::io::Error) -> Error {
    move |e: std::io::Error| match is_gone(&e) {
        true => Error::NotConfirmed {
            sent,
            size,
            reply: Vec::new(),
        },
        false => Error::Connection(e),
    }
}

fn report(progress: Option<&watch::Sender<Progress>>, done: u64, total: u64) {
    if let Some(p) = progress {
        p.send_replace(Progress { done, total });
    }
}

/// Writes the 4-byte size, after checking that `size` fits it.
async fn write_header<S: AsyncWrite + Unpin>(
    stream: &mut S,
    size: u64,
    config: &Config,
) -> Result<()> {
    let limit = u64::from(u32::MAX);
    if size > limit {
        return Err(Error::TooLarge { size, limit });
    }
    let header = (size as u32).to_be_bytes();
    let write = stream.write_all(&header);
    let what = "the size header to be written";
    within(
        config.idle_timeout,
        what,
        write,
        gone_means_refused(0, size),
    )
    .await
}

/// The body of a file over TCP with `sendfile`: the kernel sends the
/// file's pages from the page cache, with no copy through this process
/// (`crate::zero_copy`). Each call sends at most [`BUFFER`] bytes, under
/// the idle limit, as each write of the portable path.
#[cfg(target_os = "linux")]
async fn send_file_body(
    stream: &tokio::net::TcpStream,
    file: &std::fs::File,
    size: u64,
    config: &Config,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<()> {
    let idle = config.idle_timeout;
    let mut sent = 0u64;
    while sent < size {
        let len = BUFFER.min((size - sent) as usize);
        let at = sent;
        let call = crate::zero_copy::send_file(stream, file, &mut sent, len);
        let what = "the body to be written";
        if within(idle, what, call, gone_means_refused(at, size)).await? == 0 {
            return Err(Error::SourceEnded {
                expected: size,
                read: sent,
            });
        }
        report(progress, sent, size);
    }
    Ok(())
}

/// Half-closes (the receiver still answers) and reads the reply: at most
/// 4096 bytes, until the receiver closes or the reply is [`THANKS`].
async fn read_reply<S>(stream: &mut S, size: u64, config: &Config) -> Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let half_close = stream.shutdown();
    let idle = config.idle_timeout;
    within(
        idle,
        "the half-close",
        half_close,
        gone_means_refused(size, size),
    )
    .await?;
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
    let wrap = gone_means_refused(size, size);
    let got = within(config.reply_timeout, "the reply", read, wrap).await?;
    reply.truncate(got);
    Ok(reply)
}
