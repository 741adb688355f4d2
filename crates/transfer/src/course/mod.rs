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
//! hash (TCP's checksum is all the integrity it gets) and no way to say
//! why a file was refused: a receiver that cannot take it closes without
//! `Gracias.`, which the sender reports as [`Error::NotConfirmed`].
//!
//! - [`Receiver`]: a server for the protocol, one task per sender, with a
//!   connection cap, an overall deadline per sender and events.
//! - [`send_file`]: opens a file, connects and sends it.
//! - [`receive`] and [`send`]: one transfer over any stream.
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
use tokio::time::Instant;

use crate::error::{is_gone, Error, Result};
use crate::receiver::{check_name, remove_quietly};
use crate::{Progress, TransferId};

mod server;

pub use server::Receiver;

/// The receiver's answer: `"Gracias."` in UTF-8, not length-prefixed.
pub const THANKS: &[u8] = b"Gracias.";

/// Bytes moved per file read or write: large enough that the hops to
/// tokio's blocking threads for file I/O (one per read or write) do not
/// dominate, as they did at 256 KiB (a fifth of both ends' CPU in context
/// switches). A transfer holds two of them, plus tokio's own file buffer.
pub const BUFFER: usize = 1 << 20;

/// Limits of the course protocol's two ends.
///
/// A receiver gives each sender two clocks: the idle limit on every read,
/// and an overall deadline of `grace + size / min_rate` from the moment it
/// connected, capped by `max_time`. The first cuts a sender that stops;
/// the second one that trickles (a byte now and then keeps any idle limit
/// happy), so it holds its connection slot for a bounded time.
///
/// ```
/// use std::time::Duration;
/// use enchufe::transfer::course::Config;
/// let config = Config::default().min_rate(Some(1 << 20)).max_time(Some(Duration::from_secs(600)));
/// // 10 MiB: 30 s of grace plus 10 s at 1 MiB/s.
/// assert_eq!(config.time_for(10 << 20), Some(Duration::from_secs(40)));
/// ```
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
    /// The slowest average rate a body may arrive at, in bytes per second
    /// (`None`: no rate). Default 64 KiB/s: a slow home uplink (512 kbit/s)
    /// still passes; a 1 GiB body gets about 4 h 34 min. The course's
    /// scripts on loopback move hundreds of MiB/s.
    pub min_rate: Option<u64>,
    /// Time every sender gets besides what `min_rate` allows, and the limit
    /// for its 4-byte size to arrive (or `idle_timeout`, if shorter).
    /// Default 30 s: the course's sender connects first, then reads the
    /// whole file into memory, and only then sends the size.
    pub grace: Duration,
    /// The longest a whole transfer may take, whatever its size (`None`: no
    /// cap but the rate). Default `None`.
    pub max_time: Option<Duration>,
    /// Senders a [`Receiver`] serves at once; the next waits in the
    /// listener's backlog. Default 16: each holds two [`BUFFER`]s
    /// (32 MiB in all) and a file.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: 1 << 30,
            idle_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(30),
            min_rate: Some(64 << 10),
            grace: Duration::from_secs(30),
            max_time: None,
            max_connections: 16,
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
    /// Sets [`Config::reply_timeout`].
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }
    /// Sets [`Config::min_rate`], in bytes per second.
    pub fn min_rate(mut self, bytes_per_second: Option<u64>) -> Self {
        self.min_rate = bytes_per_second;
        self
    }
    /// Sets [`Config::grace`].
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
    /// Sets [`Config::max_time`].
    pub fn max_time(mut self, limit: Option<Duration>) -> Self {
        self.max_time = limit;
        self
    }
    /// Sets [`Config::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The time a transfer of `size` bytes is given from its connection:
    /// `grace + size / min_rate`, capped by `max_time`; `None` when neither
    /// limits it.
    pub fn time_for(&self, size: u64) -> Option<Duration> {
        let by_rate = self.min_rate.map(|rate| {
            let secs = size as f64 / rate.max(1) as f64;
            self.grace
                .saturating_add(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
        });
        match (by_rate, self.max_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The limit for the 4-byte size: `grace`, or `max_time` if shorter.
    fn header_time(&self) -> Duration {
        self.max_time.map_or(self.grace, |m| m.min(self.grace))
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
pub(crate) async fn read_size<S: AsyncRead + Unpin>(
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
pub(crate) async fn receive_body<S>(
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

/// Sends the file at `path` to the course receiver at `addr` (`HOST:PORT`)
/// and returns its size once the receiver answered [`THANKS`]. The file is
/// opened before connecting, so a missing file costs the receiver nothing.
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
    let open = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(open)?;
    let meta = file.metadata().await.map_err(open)?;
    if !meta.is_file() {
        return Err(open(std::io::Error::other("not a regular file")));
    }
    let size = meta.len();
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| Error::Connect {
            addr: addr.to_owned(),
            source,
        })?;
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
    let limit = u64::from(u32::MAX);
    if size > limit {
        return Err(Error::TooLarge { size, limit });
    }
    // A receiver that cannot take the file closes: the sender sees a broken
    // pipe or a reset, which is the receiver's answer, not a network fault.
    let net = |sent: u64| {
        move |e: std::io::Error| match is_gone(&e) {
            true => Error::NotConfirmed {
                sent,
                size,
                reply: Vec::new(),
            },
            false => Error::Connection(e),
        }
    };
    let idle = config.idle_timeout;
    let header = (size as u32).to_be_bytes();
    within(
        idle,
        "the size header to be written",
        stream.write_all(&header),
        net(0),
    )
    .await?;
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
                let wrote = net(sent + at as u64);
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
        if let Some(p) = progress {
            p.send_replace(Progress {
                done: sent,
                total: size,
            });
        }
    }
    within(idle, "the half-close", stream.shutdown(), net(size)).await?;
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
    let got = within(config.reply_timeout, "the reply", read, net(size)).await?;
    reply.truncate(got);
    Ok(reply)
}
