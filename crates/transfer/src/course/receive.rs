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
    let arrival = Arrival::new(dir, name, size, config, start, progress);
    let path = receive_body(stream, arrival).await?;
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

/// A body on its way into `dir/name`: its temporary file, its limits, and
/// the bytes in the file so far, reported as they land.
pub(super) struct Arrival<'a> {
    dest: PathBuf,
    part: Part,
    size: u64,
    config: &'a Config,
    clock: Clock,
    progress: Option<&'a watch::Sender<Progress>>,
    written: u64,
}

impl<'a> Arrival<'a> {
    /// A body of `size` bytes for `dir/name` whose sender connected at
    /// `start`.
    pub(super) fn new(
        dir: &Path,
        name: &str,
        size: u64,
        config: &'a Config,
        start: Instant,
        progress: Option<&'a watch::Sender<Progress>>,
    ) -> Self {
        Arrival {
            dest: dir.join(name),
            part: Part::new(dir),
            size,
            config,
            clock: Clock::new(config, size, start),
            progress,
            written: 0,
        }
    }

    /// `n` more bytes are in the file.
    fn wrote(&mut self, n: u64) {
        self.written += n;
        if let Some(p) = self.progress {
            p.send_replace(Progress {
                done: self.written,
                total: self.size,
            });
        }
    }
}

/// Receives a body into its file and answers [`THANKS`]; the path.
pub(super) async fn receive_body<S>(stream: &mut S, mut arrival: Arrival<'_>) -> Result<PathBuf>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    write_body(stream, &mut arrival).await?;
    conclude(stream, arrival).await
}

/// [`receive_body`] on a TCP socket, the body spliced from the socket into
/// the file without passing through this process (`crate::zero_copy`).
#[cfg(target_os = "linux")]
pub(super) async fn receive_body_spliced(
    stream: &mut tokio::net::TcpStream,
    mut arrival: Arrival<'_>,
) -> Result<PathBuf> {
    splice_body(stream, &mut arrival).await?;
    conclude(stream, arrival).await
}

/// Gives the complete body its name and answers [`THANKS`].
async fn conclude<S: AsyncWrite + Unpin>(stream: &mut S, arrival: Arrival<'_>) -> Result<PathBuf> {
    let Arrival {
        dest, part, config, ..
    } = arrival;
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

impl Part {
    fn new(dir: &Path) -> Part {
        Part(dir.join(format!(".enchufe-course-{}.part", TransferId::random())))
    }
}

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
    /// The clock of a body of `size` bytes whose sender connected at `start`.
    fn new(config: &Config, size: u64, start: Instant) -> Clock {
        Clock {
            idle: config.idle_timeout,
            deadline: config.time_for(size).map(|t| (start + t, t)),
        }
    }

    /// One wait for the body's bytes, under whichever limit comes first:
    /// one timer per wait, as the idle limit alone had.
    async fn limit<T>(
        &self,
        wait: impl std::future::Future<Output = std::io::Result<T>>,
        received: u64,
        expected: u64,
    ) -> Result<T> {
        let idle_at = Instant::now() + self.idle;
        match self.deadline {
            Some((at, after)) if at < idle_at => match tokio::time::timeout_at(at, wait).await {
                Ok(r) => r.map_err(Error::Connection),
                Err(_) => Err(Error::TooSlow {
                    received,
                    expected,
                    after,
                }),
            },
            _ => within(self.idle, "the body", wait, Error::Connection).await,
        }
    }
}

async fn write_body<S: AsyncRead + Unpin>(stream: &mut S, arrival: &mut Arrival<'_>) -> Result<()> {
    let (size, part) = (arrival.size, arrival.part.0.clone());
    let storage = |e| Error::storage(&part, e);
    let file = tokio::fs::File::create(&part).await.map_err(storage)?;
    let mut file = Some(file.into_std().await);
    // Two buffers: one fills from the stream while the other is written on
    // the blocking pool, straight from the buffer (tokio's `File` would copy
    // it into a buffer of its own first).
    let room = BUFFER.min(size as usize);
    let (mut buf, mut spare) = (vec![0; room], Some(vec![0; room]));
    let mut writing: Option<Writing> = None;
    let mut received = 0u64;
    while received < size {
        let want = buf.len().min((size - received) as usize);
        let mut got = 0;
        while got < want {
            let at = received + got as u64;
            let n = arrival
                .clock
                .limit(stream.read(&mut buf[got..want]), at, size)
                .await?;
            if n == 0 {
                return Err(Error::Truncated {
                    expected: size,
                    received: at,
                });
            }
            got += n;
        }
        received += got as u64;
        if let Some(w) = writing.take() {
            let (f, b) = written_back(w, arrival).await.map_err(storage)?;
            (file, spare) = (Some(f), Some(b));
        }
        let full = std::mem::replace(&mut buf, spare.take().expect("the written buffer is back"));
        let f = file.take().expect("the file is back after each write");
        writing = Some(tokio::task::spawn_blocking(move || {
            use std::io::Write;
            (&f).write_all(&full[..got])?;
            Ok((f, full, got as u64))
        }));
    }
    if let Some(w) = writing.take() {
        written_back(w, arrival).await.map_err(storage)?;
    }
    Ok(())
}

/// A buffer being written to the file on the blocking pool: the file and
/// the buffer come back, with the bytes written.
type Writing = tokio::task::JoinHandle<std::io::Result<(std::fs::File, Vec<u8>, u64)>>;

/// Waits for a write and counts its bytes.
async fn written_back(
    w: Writing,
    arrival: &mut Arrival<'_>,
) -> std::io::Result<(std::fs::File, Vec<u8>)> {
    let (file, buf, n) = w.await.map_err(std::io::Error::other)??;
    arrival.wrote(n);
    Ok((file, buf))
}

/// The body from a TCP socket into the file through two pipes: one
/// fills from the socket (`splice`, in the kernel) while the other drains
/// into the file on the blocking pool, as the two buffers of the portable
/// path, each pipe holding at most [`BUFFER`] bytes (kernel memory, page
/// references).
#[cfg(target_os = "linux")]
async fn splice_body(stream: &tokio::net::TcpStream, arrival: &mut Arrival<'_>) -> Result<()> {
    use crate::zero_copy::{Fill, Pipe};
    use std::sync::Arc;

    let (size, part) = (arrival.size, arrival.part.0.clone());
    let storage = |e| Error::storage(&part, e);
    let file = tokio::fs::File::create(&part).await.map_err(storage)?;
    let file = Arc::new(file.into_std().await);
    let mut filling = Pipe::new(BUFFER).map_err(storage)?;
    let mut spare = Some(Pipe::new(BUFFER).map_err(storage)?);
    let mut draining: Option<Draining> = None;
    let mut received = 0u64;
    while received < size {
        let want = filling.room().min((size - received) as usize);
        match arrival
            .clock
            .limit(filling.fill(stream, want), received, size)
            .await?
        {
            Fill::Moved(n) => {
                received += n as u64;
                if filling.room() > 0 && received < size {
                    continue;
                }
            }
            Fill::End => {
                return Err(Error::Truncated {
                    expected: size,
                    received,
                })
            }
            Fill::Full => {}
        }
        if let Some(d) = draining.take() {
            let pipe = drained(d, arrival).await;
            spare = Some(pipe.map_err(storage)?);
        }
        let next = spare.take().expect("the drained pipe is back");
        let mut full = std::mem::replace(&mut filling, next);
        let file = file.clone();
        draining = Some(tokio::task::spawn_blocking(move || {
            let n = full.held() as u64;
            full.drain_into(&file).map(|()| (full, n))
        }));
    }
    if let Some(d) = draining.take() {
        drained(d, arrival).await.map_err(storage)?;
    }
    Ok(())
}

/// A pipe draining into the file on the blocking pool; it comes back
/// empty, with the bytes it moved.
#[cfg(target_os = "linux")]
type Draining = tokio::task::JoinHandle<std::io::Result<(crate::zero_copy::Pipe, u64)>>;

/// Waits for a drain and counts its bytes as written.
#[cfg(target_os = "linux")]
async fn drained(
    d: Draining,
    arrival: &mut Arrival<'_>,
) -> std::io::Result<crate::zero_copy::Pipe> {
    let (pipe, n) = d.await.map_err(std::io::Error::other)??;
    arrival.wrote(n);
    Ok(pipe)
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
