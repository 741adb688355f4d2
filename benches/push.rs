//! Server-initiated messages over loopback TCP (127.0.0.1): a 32-byte
//! payload pushed by an enchufe `Server` (plain profile, so a push is a bare
//! `[len][payload]` frame) to raw TCP clients that only read.
//!
//! - `push/one`: `ServerHandle::push` to one connection (the registry
//!   lookup included), until that client has read the frame; time per push.
//! - `push/broadcast_1000`: `ServerHandle::broadcast` to 1,000 connections,
//!   until every one of the 1,000 clients has read its copy; time per
//!   broadcast, `Throughput::Elements(1000)` = copies delivered. Each client
//!   is its own reader task on the runtime; the last one to read wakes the
//!   bench. The connections are opened once and stay open across
//!   iterations.
//!
//! One multi-threaded runtime (2 workers), built once. The process holds
//! about 2,000 sockets; on Unix the soft open-file limit is raised to the
//! hard one first.
//!
//! ```text
//! cargo bench --bench push
//! cargo bench --bench push -- --quick    # a short, indicative run
//! ```
//!
//! Results and how to read them: `BENCHMARKS.md`.

// This bench uses the runtime and the echo server, not the pipelined driver.
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_main, Criterion, Throughput};
use enchufe::server::Config as ServerConfig;
// Raw TCP readers that never write: pinned plain, so pushes reach them at
// once (an `Auto` server waits for a first frame that never comes).
use enchufe::Profile;
use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;

/// Connections a broadcast reaches.
const FAN_OUT: usize = 1_000;

const MSG: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// A plain-profile frame of `MSG`: 4-byte big-endian length, payload.
const FRAME_LEN: usize = 4 + MSG.len();

fn frame() -> [u8; FRAME_LEN] {
    let mut frame = [0; FRAME_LEN];
    frame[..4].copy_from_slice(&(MSG.len() as u32).to_be_bytes());
    frame[4..].copy_from_slice(MSG);
    frame
}

/// A raw TCP client whose first frame has come back: the server registered
/// the connection before serving it, so pushes and broadcasts now reach it.
async fn open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect (this bench holds ~2,000 sockets: check `ulimit -n`)");
    stream.set_nodelay(true).unwrap();
    stream.write_all(&frame()).await.unwrap();
    let mut echo = [0; FRAME_LEN];
    stream.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, frame());
    stream
}

/// The broadcast's receivers: one reader task per connection, counting the
/// frames read; the reader that completes a broadcast resets the count and
/// wakes the bench. The next broadcast is only sent after that wake-up, so
/// no frame of it can be counted before the reset.
struct FanOut {
    all_read: Arc<Notify>,
    /// Aborted when dropped: no reader outlives the bench.
    _readers: JoinSet<()>,
}

impl FanOut {
    async fn open(addr: SocketAddr, n: usize) -> FanOut {
        let received = Arc::new(AtomicUsize::new(0));
        let all_read = Arc::new(Notify::new());
        let mut readers = JoinSet::new();
        // 64 at a time, well inside the listener's backlog.
        for first in (0..n).step_by(64) {
            let batch = join_all((first..n.min(first + 64)).map(|_| open(addr))).await;
            for mut stream in batch {
                let (received, all_read) = (received.clone(), all_read.clone());
                readers.spawn(async move {
                    let mut frame = [0; FRAME_LEN];
                    while stream.read_exact(&mut frame).await.is_ok() {
                        debug_assert_eq!(&frame[4..], MSG);
                        if received.fetch_add(1, Ordering::AcqRel) + 1 == n {
                            received.store(0, Ordering::Release);
                            all_read.notify_one();
                        }
                    }
                });
            }
        }
        FanOut {
            all_read,
            _readers: readers,
        }
    }

    /// Until every reader has read the last broadcast (a lost copy fails
    /// the bench instead of hanging it).
    async fn all_read(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.all_read.notified())
            .await
            .expect("a broadcast copy was not read within 10 s");
    }
}

fn push(c: &mut Criterion) {
    raise_open_file_limit();
    let rt = support::runtime();
    let msg = Bytes::from_static(MSG);
    let mut group = c.benchmark_group("push");

    let (one_server, one_id, one_client) = rt.block_on(async {
        let server = support::echo_server(ServerConfig::default().profile(Profile::Plain)).await;
        let client = open(server.local_addr()).await;
        let id = server.connections()[0].id();
        (server, id, Mutex::new(client))
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("one", |b| {
        let (server, client, msg) = (&one_server, &one_client, &msg);
        b.to_async(&rt).iter_custom(|iters| async move {
            // Locked once, outside the timing.
            let mut client = client.lock().await;
            let mut frame = [0; FRAME_LEN];
            let start = Instant::now();
            for _ in 0..iters {
                server.push(one_id, msg.clone()).await.unwrap();
                client.read_exact(&mut frame).await.unwrap();
            }
            start.elapsed()
        });
    });

    let (fan_server, fan_out) = rt.block_on(async {
        let server = support::echo_server(
            ServerConfig::default()
                .max_connections(FAN_OUT)
                .profile(Profile::Plain),
        )
        .await;
        let fan_out = FanOut::open(server.local_addr(), FAN_OUT).await;
        assert_eq!(server.connection_count(), FAN_OUT);
        (server, fan_out)
    });
    group.throughput(Throughput::Elements(FAN_OUT as u64));
    group.bench_function(format!("broadcast_{FAN_OUT}"), |b| {
        let (server, fan_out, msg) = (&fan_server, &fan_out, &msg);
        b.to_async(&rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                let queued = server.broadcast(msg.clone()).unwrap();
                assert_eq!(queued, FAN_OUT, "every connection takes the copy");
                fan_out.all_read().await;
            }
            start.elapsed()
        });
    });
    group.finish();

    rt.block_on(async move {
        drop((one_client, fan_out));
        one_server.shutdown().await;
        fan_server.shutdown().await;
    });
}

/// Lifts the soft limit on open files to the hard one: 1,000 connections
/// are 2,000 sockets in this one process, over a common default of 1,024.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            if soft < hard {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
            }
        }
    }
}

/// `criterion_group!` makes a `pub fn` that `missing_docs` would flag and
/// that cannot carry a doc comment; in a private module it is not exported.
mod group {
    use super::push;

    criterion::criterion_group! {
        name = benches;
        config = crate::support::criterion();
        targets = push
    }
}
criterion_main!(group::benches);
