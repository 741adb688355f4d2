//! Broadcast fan-out to 1,000 members: on one server, and across three
//! servers through the bus, side by side in one run.
//!
//! Members are raw TCP clients that only read (plain profile: a copy is a
//! bare `[len][payload]` frame of 32 bytes whose first 8 are the message's
//! number), one reader task each. Cases:
//!
//! - `1 server, ServerHandle::broadcast`: the server's own broadcast, no bus.
//! - `1 server, Cluster on Redis`: `Cluster::broadcast` with one server
//!   attached (local delivery, plus a `PUBLISH` nobody else reads).
//! - `3 servers, Cluster on MemoryBus`: members spread 334/333/333, the
//!   broadcast from the first server; the bus in process.
//! - `3 servers, Cluster on Redis`: the same through a real `redis-server`
//!   (started by the bench on a free loopback port; each server has its own
//!   `RedisBus`, as separate processes would).
//!
//! Figures: latency from the send to each member's read, p50 and p99 over
//! every (message, member) pair, one message at a time; throughput with up
//! to `WINDOW` messages in flight, messages per second (and copies per
//! second); memory per member: the process's resident memory after the
//! members connected (and were heard of by every server), minus before,
//! divided by the members. That is the server's connection, the cluster's
//! share, and the member's own socket and reader task, all in this one
//! process: an upper bound for the server's side.
//!
//! ```text
//! cargo bench -p enchufe-bus --features redis --bench fanout
//! FANOUT_MEMBERS=300 FANOUT_MESSAGES=200 cargo bench -p enchufe-bus --features redis --bench fanout
//! ```
//!
//! Needs `redis-server` (scripts/setup installs it) and about 4,500 open
//! files (`ulimit -n`). Results: `BENCHMARKS.md`, section Bus.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use enchufe::bus::{self, Bus, Cluster, MemoryBus, RedisBus, RedisConfig};
use enchufe::server::Config as ServerConfig;
use enchufe::{handler_fn, Profile, Server, ServerHandle};
use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Messages in flight in the throughput run: enough to keep every queue
/// busy, few enough that no connection's queue overflows (a copy dropped
/// by the slow-consumer policy would stall the run, and fail it).
const WINDOW: usize = 16;
const PAYLOAD: usize = 32;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload(n: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(PAYLOAD);
    out.put_u64(n);
    out.put_bytes(b'.', PAYLOAD - 8);
    out.freeze()
}

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// What every reader shares: when each message was sent, and how many
/// copies were read so far.
struct Shared {
    start: Instant,
    sent_at: Vec<AtomicU64>,
    read: AtomicUsize,
    members: usize,
    progress: Notify,
}

/// A member: connects, sends one frame and reads its echo (the server has
/// registered it, so broadcasts reach it).
async fn member(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect (ulimit -n?)");
    stream.set_nodelay(true).unwrap();
    let hello = payload(u64::MAX);
    stream.write_u32(PAYLOAD as u32).await.unwrap();
    stream.write_all(&hello).await.unwrap();
    let mut echo = [0; 4 + PAYLOAD];
    stream.read_exact(&mut echo).await.unwrap();
    stream
}

/// Reads `count` copies; returns the stream and the latencies (ns).
async fn reader(mut stream: TcpStream, shared: Arc<Shared>, count: usize) -> (TcpStream, Vec<u64>) {
    let mut latencies = Vec::with_capacity(count);
    let mut frame = [0; 4 + PAYLOAD];
    for _ in 0..count {
        stream.read_exact(&mut frame).await.expect("a copy");
        let n = u64::from_be_bytes(frame[4..12].try_into().unwrap()) as usize;
        let now = shared.start.elapsed().as_nanos() as u64;
        latencies.push(now.saturating_sub(shared.sent_at[n].load(Ordering::Acquire)));
        if (shared.read.fetch_add(1, Ordering::AcqRel) + 1).is_multiple_of(shared.members) {
            shared.progress.notify_one();
        }
    }
    (stream, latencies)
}

/// Where a case's servers get their bus (none: no cluster).
type MakeBus<'a> = Option<&'a dyn Fn() -> Arc<dyn Bus>>;

/// One way to broadcast.
type Sender = Box<dyn Fn(Bytes) + Send + Sync>;

struct Figures {
    p50_us: f64,
    p99_us: f64,
    msgs_per_s: f64,
    bytes_per_member: u64,
}

/// Runs both measurements over `streams` with `send`.
async fn measure(streams: Vec<TcpStream>, send: &Sender, messages: usize, memory: u64) -> Figures {
    let members = streams.len();
    let until = |shared: &Arc<Shared>, copies: usize| {
        let shared = shared.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), async {
                while shared.read.load(Ordering::Acquire) < copies {
                    shared.progress.notified().await;
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "copies missing after 30 s: {} of {copies} read (dropped?)",
                    shared.read.load(Ordering::Acquire)
                )
            })
        }
    };
    let run = |streams: Vec<TcpStream>, count: usize| {
        let shared = Arc::new(Shared {
            start: Instant::now(),
            sent_at: (0..count).map(|_| AtomicU64::new(0)).collect(),
            read: AtomicUsize::new(0),
            members,
            progress: Notify::new(),
        });
        let readers: Vec<_> = streams
            .into_iter()
            .map(|s| tokio::spawn(reader(s, shared.clone(), count)))
            .collect();
        (shared, readers)
    };

    // Latency: one message at a time.
    let (shared, readers) = run(streams, messages);
    for n in 0..messages {
        shared.sent_at[n].store(shared.start.elapsed().as_nanos() as u64, Ordering::Release);
        send(payload(n as u64));
        until(&shared, members * (n + 1)).await;
    }
    let mut streams = Vec::with_capacity(members);
    let mut latencies = Vec::with_capacity(members * messages);
    for reader in join_all(readers).await {
        let (stream, mut l) = reader.unwrap();
        streams.push(stream);
        latencies.append(&mut l);
    }
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;

    // Throughput: up to WINDOW in flight.
    let count = messages * 4;
    let (shared, readers) = run(streams, count);
    let started = Instant::now();
    for n in 0..count {
        if n >= WINDOW {
            until(&shared, members * (n - WINDOW)).await;
        }
        shared.sent_at[n].store(shared.start.elapsed().as_nanos() as u64, Ordering::Release);
        send(payload(n as u64));
    }
    until(&shared, members * count).await;
    let elapsed = started.elapsed();
    join_all(readers).await;
    Figures {
        p50_us: pick(0.5),
        p99_us: pick(0.99),
        msgs_per_s: count as f64 / elapsed.as_secs_f64(),
        bytes_per_member: memory / members as u64,
    }
}

async fn server() -> ServerHandle {
    let echo = handler_fn(|req: Bytes, _conn| async move { Ok::<_, Infallible>(Some(req)) });
    Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(ServerConfig::default().profile(Profile::Plain))
        .serve(echo)
}

/// `members` members spread over `servers`, in batches of 64.
async fn members(servers: &[ServerHandle], members: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(members);
    for first in (0..members).step_by(64) {
        let batch = (first..members.min(first + 64))
            .map(|i| member(servers[i % servers.len()].local_addr()));
        streams.extend(join_all(batch).await);
    }
    streams
}

async fn settle(clusters: &[Cluster]) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !clusters.iter().all(|c| c.nodes().len() == clusters.len()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every server hears every other");
}

fn cluster_config() -> bus::Config {
    let mut config = bus::Config::default();
    config.heartbeat = Duration::from_millis(200);
    config
}

/// One case: `n` servers, attached to buses from `bus` (none: the
/// server's own broadcast).
async fn case_run(n: usize, bus: MakeBus<'_>, count: usize, messages: usize) -> Figures {
    let servers = join_all((0..n).map(|_| server())).await;
    let before = rss();
    let streams = members(&servers, count).await;
    let (send, clusters): (Sender, Vec<Cluster>) = match bus {
        None => {
            let handle = servers[0].clone();
            (Box::new(move |msg| _ = handle.broadcast(msg)), Vec::new())
        }
        Some(bus) => {
            let clusters: Vec<Cluster> = servers
                .iter()
                .map(|s| Cluster::attach(s, bus(), cluster_config()).unwrap())
                .collect();
            settle(&clusters).await;
            let first = clusters[0].clone();
            (
                Box::new(move |msg| _ = first.broadcast(msg).unwrap()),
                clusters,
            )
        }
    };
    let memory = rss().saturating_sub(before);
    let figures = measure(streams, &send, messages, memory).await;
    for cluster in clusters {
        cluster.detach().await;
    }
    for server in servers {
        server.shutdown().await;
    }
    figures
}

/// The cases, by name, servers and bus.
const CASES: [(&str, usize, Option<&str>); 4] = [
    ("1 server, `ServerHandle::broadcast`", 1, None),
    ("1 server, `Cluster` on Redis", 1, Some("redis")),
    ("3 servers, `Cluster` on `MemoryBus`", 3, Some("memory")),
    ("3 servers, `Cluster` on Redis", 3, Some("redis")),
];

/// Each case runs in a process of its own (this program, with
/// `FANOUT_CASE` and `FANOUT_REDIS` set), so that one case's freed memory
/// is not reused by the next and its memory figure is its own.
fn main() {
    let count = env("FANOUT_MEMBERS", 1_000);
    let messages = env("FANOUT_MESSAGES", 300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let (Ok(case), Ok(url)) = (std::env::var("FANOUT_CASE"), std::env::var("FANOUT_REDIS")) {
        let (name, servers, bus) = CASES[case.parse::<usize>().unwrap()];
        let memory = MemoryBus::new();
        let make = move || -> Arc<dyn Bus> {
            match bus {
                Some("redis") => Arc::new(RedisBus::open(&url, RedisConfig::default()).unwrap()),
                _ => Arc::new(memory.clone()),
            }
        };
        let f = rt.block_on(case_run(
            servers,
            bus.map(|_| &make as &dyn Fn() -> Arc<dyn Bus>),
            count,
            messages,
        ));
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} | {:.0} | {:.1} KiB |",
            f.p50_us,
            f.p99_us,
            f.msgs_per_s,
            f.msgs_per_s * count as f64,
            f.bytes_per_member as f64 / 1024.0
        );
        return;
    }
    rt.block_on(async {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let mut redis = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (scripts/setup installs it)");
        tokio::time::timeout(Duration::from_secs(10), async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server accepts");
        println!("{count} members, {messages} messages one at a time (latency), {} with {WINDOW} in flight (throughput), {PAYLOAD}-byte payload", messages * 4);
        println!();
        println!("| case | p50 | p99 | messages/s | copies/s | memory per member |");
        println!("|---|---|---|---|---|---|");
        let me = std::env::current_exe().unwrap();
        for case in 0..CASES.len() {
            let status = tokio::process::Command::new(&me)
                .env("FANOUT_CASE", case.to_string())
                .env("FANOUT_REDIS", format!("redis://127.0.0.1:{port}"))
                .status()
                .await
                .unwrap();
            assert!(status.success(), "case {case} failed");
        }
        redis.kill().await.unwrap();
    });
}
