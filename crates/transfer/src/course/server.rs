//! The course protocol's receiving server: an accept loop and a task per
//! sender.
//!
//! ```text
//!  accept loop: permit (max_connections) -> accept -> spawn, tracked
//!  sender task: name recibido-N.bin -> size (grace) -> Started
//!               body: each read under idle_timeout and the overall
//!               deadline (grace + size / min_rate, max_time)
//!               -> rename, Gracias. -> Finished   | error -> Failed
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::Config;
#[cfg(target_os = "linux")]
use super::receive::receive_body_spliced;
use super::receive::{read_size, receive_body, Arrival};
use crate::error::{Error, Result};
use crate::{Event, Progress, TransferId};

/// Receives the course's file protocol from any number of senders at once,
/// each into `DIR/recibido-N.bin` (N counts up from 1, skipping names that
/// exist, so a restarted receiver does not replace earlier files).
///
/// It reports each sender as enchufe's [`Receiver`](crate::Receiver) reports
/// a transfer, with an [`Event`]: `Started` once the size is accepted
/// (`offset` 0: the protocol cannot resume), `Finished` (its `hash` empty:
/// the protocol carries none, and hashing would cost the receiver CPU for
/// nothing it could check), or `Failed` ([`Error::TooSlow`] for a sender past its deadline,
/// [`Error::Cancelled`] for one cut by [`Receiver::shutdown`]). The id is a
/// fresh one per sender.
///
/// Each sender has its own task, so one that trickles holds up only
/// itself, and for a bounded time: [`Config::time_for`] its size. At most
/// [`Config::max_connections`] are served at once; the next ones wait in
/// the listener's backlog. [`Receiver::shutdown`] stops accepting, cuts
/// the transfers under way (their temporary files are removed) and waits
/// for their tasks.
///
/// # Examples
///
/// ```
/// use enchufe::transfer::{course::{self, Receiver}, Event};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let file = dir.path().join("informe.txt");
/// # std::fs::write(&file, "hola")?;
/// # let out = dir.path().join("in");
/// # std::fs::create_dir(&out)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?.to_string();
/// let receiver = Receiver::new(&out, course::Config::default());
/// let mut events = receiver.events();
/// receiver.serve(listener);
///
/// let size = course::send_file(&file, &addr, &Default::default(), None).await?;
/// assert_eq!(size, 4);
/// assert!(matches!(events.recv().await?, Event::Started { size: 4, .. }));
/// let Event::Finished { path, .. } = events.recv().await? else { panic!() };
/// assert_eq!(std::fs::read(path)?, b"hola");
/// receiver.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    config: Config,
    events: broadcast::Sender<Event>,
    /// Every accept loop and sender task, waited for by `shutdown`.
    tasks: TaskTracker,
    /// Cancelled by `shutdown`: ends accept loops and cuts transfers.
    shutdown: CancellationToken,
    /// One per sender served: taken before `accept`, so a full receiver
    /// leaves new senders in the backlog instead of accepting and queueing.
    permits: Arc<Semaphore>,
    /// N of the next `recibido-N.bin`.
    next: AtomicU64,
    /// Senders being served (the permits also count an accept waiting).
    serving: AtomicUsize,
}

/// The longest pause after a failed `accept` (out of descriptors, say):
/// the pause doubles from 10 ms up to this, and starts over on success.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Receiver {
    /// A receiver writing into `dir` (which must exist and be writable:
    /// [`prepare_dir`](crate::receiver::prepare_dir) checks both).
    pub fn new(dir: impl Into<PathBuf>, config: Config) -> Receiver {
        let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
        Receiver {
            inner: Arc::new(Inner {
                dir: dir.into(),
                config,
                events: broadcast::channel(64).0,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                permits,
                next: AtomicU64::new(1),
                serving: AtomicUsize::new(0),
            }),
        }
    }

    /// The directory files are written into.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Events of every sender from now on. A receiver that lags behind by
    /// more than 64 events loses the oldest (`broadcast`).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Senders being served now.
    pub fn active(&self) -> usize {
        self.inner.serving.load(Ordering::Relaxed)
    }

    /// Serves the senders `listener` accepts, in a task of its own, until
    /// [`Receiver::shutdown`]. A failed `accept` is logged and retried
    /// after a pause, never the end of the loop.
    pub fn serve(&self, listener: TcpListener) {
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                let accepted = tokio::select! {
                    () = inner.shutdown.cancelled() => return,
                    accepted = accept(&inner, &listener) => accepted,
                };
                match accepted {
                    Ok((stream, peer, permit)) => {
                        backoff = Duration::from_millis(10);
                        spawn(&inner, stream, Some(peer), permit);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; retrying");
                        tokio::select! {
                            () = inner.shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        });
    }

    /// Serves one sender on a stream of any kind (a Unix socket, TLS, an
    /// in-memory pipe), in a task of its own, once a connection slot is
    /// free.
    ///
    /// # Errors
    /// [`Error::Cancelled`] when the receiver was shut down (the stream is
    /// dropped).
    pub async fn serve_stream<S>(&self, stream: S) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let permits = self.inner.permits.clone();
        let permit = tokio::select! {
            () = self.inner.shutdown.cancelled() => return Err(Error::Cancelled),
            permit = permits.acquire_owned() => permit.map_err(|_| Error::Cancelled)?,
        };
        spawn(&self.inner, stream, None, permit);
        Ok(())
    }

    /// Stops accepting, cuts the transfers under way (their temporary
    /// files are removed, each reported as [`Error::Cancelled`]) and waits
    /// for every task.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// A free slot, then a connection. Cancel safe: a permit taken while
/// `accept` had nothing is dropped with the future.
async fn accept(
    inner: &Inner,
    listener: &TcpListener,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = inner
        .permits
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

fn spawn<S>(
    inner: &Arc<Inner>,
    mut stream: S,
    peer: Option<SocketAddr>,
    permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = inner.clone();
    let tasks = inner.tasks.clone();
    inner.serving.fetch_add(1, Ordering::Relaxed);
    tasks.spawn(async move {
        let (id, name) = (TransferId::random(), inner.next_name());
        let result = tokio::select! {
            biased;
            () = inner.shutdown.cancelled() => Err(Error::Cancelled),
            r = inner.transfer(&mut stream, id, &name) => r,
        };
        drop(stream);
        drop(permit);
        inner.serving.fetch_sub(1, Ordering::Relaxed);
        let event = match result {
            Ok((path, size)) => {
                tracing::info!(?peer, path = %path.display(), size, "file received");
                Event::Finished {
                    id,
                    path,
                    size,
                    hash: String::new(),
                }
            }
            Err(error) => {
                tracing::info!(?peer, %name, %error, "sender ended without a file");
                Event::Failed {
                    id,
                    name,
                    error: Arc::new(error),
                }
            }
        };
        let _ = inner.events.send(event);
    });
}

impl Inner {
    /// `recibido-N.bin` for the next N whose name is free.
    fn next_name(&self) -> String {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let name = format!("recibido-{n}.bin");
            if !self.dir.join(&name).exists() {
                return name;
            }
        }
    }

    async fn transfer<S>(
        &self,
        stream: &mut S,
        id: TransferId,
        name: &str,
    ) -> Result<(PathBuf, u64)>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let start = Instant::now();
        let size = read_size(stream, &self.config).await?;
        let (progress, watched) = watch::channel(Progress {
            done: 0,
            total: size,
        });
        let _ = self.events.send(Event::Started {
            id,
            name: name.to_owned(),
            size,
            offset: 0,
            progress: watched,
        });
        let arrival = Arrival::new(&self.dir, name, size, &self.config, start, Some(&progress));
        // A TCP socket on Linux: the body is spliced into the file.
        #[cfg(target_os = "linux")]
        if let Some(tcp) = (stream as &mut dyn std::any::Any).downcast_mut() {
            let path = receive_body_spliced(tcp, arrival).await?;
            return Ok((path, size));
        }
        let path = receive_body(stream, arrival).await?;
        Ok((path, size))
    }
}

#[cfg(test)]
mod tests {
    //! The deadline and the cap, in paused time over in-memory streams, so
    //! the times are exact. (`tests/transfer_course.rs` has a trickler and
    //! an honest sender over TCP.)

    use std::time::Duration;

    use tokio::io::{AsyncWrite, AsyncWriteExt};

    use super::super::{send, THANKS};
    use super::*;
    use crate::Reason;

    /// A sender that declares `size` bytes and then sends one every
    /// `every`, until its stream fails; how many it sent.
    async fn trickle<S: AsyncWrite + Unpin>(mut stream: S, size: u32, every: Duration) -> u64 {
        stream.write_all(&size.to_be_bytes()).await.unwrap();
        for sent in 0..u64::from(size) {
            if stream.write_all(b"x").await.is_err() || stream.flush().await.is_err() {
                return sent;
            }
            tokio::time::sleep(every).await;
        }
        u64::from(size)
    }

    async fn next_start(events: &mut broadcast::Receiver<Event>) -> String {
        loop {
            if let Event::Started { name, .. } = events.recv().await.unwrap() {
                return name;
            }
        }
    }

    type Ended = std::result::Result<PathBuf, Arc<Error>>;

    async fn next_end(events: &mut broadcast::Receiver<Event>) -> (String, Ended) {
        loop {
            match events.recv().await.unwrap() {
                Event::Finished { path, .. } => {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    return (name, Ok(path));
                }
                Event::Failed { name, error, .. } => return (name, Err(error)),
                _ => {}
            }
        }
    }

    fn number_of(name: &str) -> u64 {
        let n = name
            .strip_prefix("recibido-")
            .and_then(|n| n.strip_suffix(".bin"));
        n.unwrap().parse().unwrap()
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// In paused time over in-memory streams: the deadline is exact.
    #[tokio::test(start_paused = true)]
    async fn a_trickler_is_cut_at_its_overall_deadline() {
        let out = tempfile::tempdir().unwrap();
        // 100 bytes at 10 B/s at least, after 2 s of grace: 12 s in all. One
        // byte a second never trips the 30 s idle limit.
        let config = Config::default()
            .min_rate(Some(10))
            .grace(Duration::from_secs(2));
        assert_eq!(config.time_for(100), Some(Duration::from_secs(12)));
        let receiver = Receiver::new(out.path(), config);
        let mut events = receiver.events();
        let start = tokio::time::Instant::now();

        let (trickler, theirs) = tokio::io::duplex(1 << 10);
        receiver.serve_stream(theirs).await.unwrap();
        let trickling = tokio::spawn(trickle(trickler, 100, Duration::from_secs(1)));
        assert_eq!(next_start(&mut events).await, "recibido-1.bin");

        // An honest sender meanwhile: done at once.
        let (mut honest, theirs) = tokio::io::duplex(1 << 10);
        receiver.serve_stream(theirs).await.unwrap();
        let reply = send(&mut honest, &b"hola"[..], 4, &Config::default(), None).await;
        assert_eq!(reply.unwrap(), THANKS);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );

        let mut ends = [next_end(&mut events).await, next_end(&mut events).await];
        ends.sort_by_key(|(name, _)| number_of(name));
        assert_eq!(std::fs::read(ends[1].1.as_ref().unwrap()).unwrap(), b"hola");
        let cut = ends[0].1.as_ref().unwrap_err();
        let Error::TooSlow {
            received,
            expected: 100,
            after,
        } = **cut
        else {
            panic!("{cut}")
        };
        assert_eq!(after, Duration::from_secs(12));
        assert!((10..=13).contains(&received), "{received}");
        assert!(cut.is_timeout() && cut.reason() == Some(Reason::Stalled));
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(12) && elapsed < Duration::from_secs(13),
            "{elapsed:?}"
        );
        assert!(trickling.await.unwrap() < 100);
        assert_eq!(names_in(out.path()), ["recibido-2.bin"]);
        receiver.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn senders_past_the_connection_cap_wait_for_a_slot() {
        let out = tempfile::tempdir().unwrap();
        let config = Config::default().max_connections(1);
        let receiver = Receiver::new(out.path(), config);
        let mut events = receiver.events();

        let (mut first, theirs) = tokio::io::duplex(1 << 10);
        receiver.serve_stream(theirs).await.unwrap();
        first.write_all(&4u32.to_be_bytes()).await.unwrap();
        next_start(&mut events).await;
        assert_eq!(receiver.active(), 1);

        // A second sender waits for the first one's slot.
        let (mut second, theirs) = tokio::io::duplex(1 << 10);
        let waiting = {
            let receiver = receiver.clone();
            tokio::spawn(async move { receiver.serve_stream(theirs).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished());

        first.write_all(b"uno!").await.unwrap();
        assert!(next_end(&mut events).await.1.is_ok());
        waiting.await.unwrap().unwrap();
        let reply = send(&mut second, &b"dos!"[..], 4, &Config::default(), None).await;
        assert_eq!(reply.unwrap(), THANKS);
        receiver.shutdown().await;
        assert_eq!(names_in(out.path()), ["recibido-1.bin", "recibido-2.bin"]);
    }

    /// Over TCP (on Linux, `sendfile` and `splice`) and over an in-memory
    /// stream (buffers), a body of several pipes' and buffers' worth
    /// arrives whole, and both ends' progress ends at its size.
    #[tokio::test]
    async fn bodies_arrive_whole_with_progress_over_tcp_and_in_memory() {
        let limit = Duration::from_secs(30);
        tokio::time::timeout(limit, async {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("in");
            std::fs::create_dir(&out).unwrap();
            let size = 3 * super::super::BUFFER + 12_345;
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let file = dir.path().join("origen.bin");
            std::fs::write(&file, &data).unwrap();
            let receiver = Receiver::new(&out, Config::default());
            let mut events = receiver.events();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            receiver.serve(listener);
            let total = size as u64;

            let (sent, mut sent_rx) = watch::channel(Progress::default());
            let config = Config::default();
            let n = super::super::send_file(&file, &addr, &config, Some(&sent)).await;
            assert_eq!(n.unwrap(), total);
            assert_eq!(sent_rx.borrow_and_update().done, total);
            let Event::Started { progress, .. } = events.recv().await.unwrap() else {
                panic!("not started first")
            };
            let (name, path) = next_end(&mut events).await;
            assert_eq!(name, "recibido-1.bin");
            assert_eq!(progress.borrow().done, total);
            assert!(std::fs::read(path.unwrap()).unwrap() == data);

            let (mut a, mut b) = tokio::io::duplex(64 << 10);
            let (got, got_rx) = watch::channel(Progress::default());
            let recv = super::super::receive(&mut b, &out, "copia.bin", &config, Some(&got));
            let send = send(&mut a, &data[..], total, &config, None);
            let ((path, n), reply) = tokio::try_join!(recv, send).unwrap();
            assert_eq!((n, reply.as_slice()), (total, THANKS));
            assert_eq!(got_rx.borrow().done, total);
            assert!(std::fs::read(path).unwrap() == data);
            receiver.shutdown().await;
        })
        .await
        .expect("not hung");
    }
}
