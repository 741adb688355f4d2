//! Load generators: many connections, many frames in flight on each, every
//! echo checked byte for byte against what was sent.
//!
//! - [`Kind::Frames`], the hand-written generator: one task per connection
//!   over its own `FramedRead`/`FramedWrite` halves; it keeps `depth` frames
//!   in flight, feeds new frames as echoes free the window and flushes only
//!   when it must wait, the same batching as the floor server.
//! - [`Kind::FramesMux`]: the same generator in the multiplexed profile
//!   (`mux`): hellos, then a header per frame.
//! - [`Kind::Client`] / [`Kind::ClientMux`]: enchufe's `Client`, one per
//!   connection, with `depth` tasks each calling `request` in a loop on
//!   clones of it (plain or multiplexed profile).
//! - [`Kind::ClientPipeline`] / [`Kind::ClientMuxPipeline`]: enchufe's
//!   `Client::pipeline`, one task per connection with `depth` requests in
//!   flight, every echo checked in order.
//! - [`Kind::Tarpc`]: tarpc's client, `depth` tasks per connection likewise.
//! - [`Kind::Http`]: keep-alive HTTP/1.1 (`http`), `depth` requests
//!   pipelined per connection, every reply checked.
//!
//! A run stops after `secs` (or after `frames` per connection, for tests);
//! frames in flight then drain, and the report counts every checked echo.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enchufe::client::{Config, Profile};
use enchufe::Client;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::error::{Error, Result};
use crate::flight;
use crate::floor::codec;
use crate::payload::{check, Payloads};
use crate::rpc::Rpc;

mod http;
mod mux;

/// Which client drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// The hand-written pipelined generator (plain frames).
    Frames,
    /// enchufe's `Client`, plain profile.
    Client,
    /// enchufe's `Client`, multiplexed profile.
    ClientMux,
    /// tarpc's client.
    Tarpc,
    /// HTTP/1.1 `GET /hola/N` on keep-alive connections (`size` unused).
    Http,
    /// tarpc's client with Nagle on (tarpc's default).
    TarpcNagle,
    /// enchufe's `Client::pipeline`, plain profile: one task per connection.
    ClientPipeline,
    /// enchufe's `Client::pipeline`, multiplexed profile.
    ClientMuxPipeline,
    /// The hand-written generator in the multiplexed profile.
    FramesMux,
}

/// One load run: who, where, how much.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Spec {
    /// Which client drives the load.
    #[arg(long, value_enum)]
    pub(crate) kind: Kind,
    /// The server's address.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) addr: SocketAddr,
    /// Connections, all opened before the clock starts.
    #[arg(long, default_value_t = 1)]
    pub(crate) conns: usize,
    /// Frames (or requests) in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub(crate) depth: usize,
    /// Payload bytes per frame.
    #[arg(long, default_value_t = 16)]
    pub(crate) size: usize,
    /// How long to send; frames in flight at the end still count.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) secs: f64,
    /// Send exactly this many frames per connection instead of for `secs`.
    #[arg(long)]
    pub(crate) frames: Option<u64>,
    /// Time every round trip and report percentiles.
    #[arg(long)]
    pub(crate) latency: bool,
}

impl Spec {
    /// The command-line arguments that reproduce this spec in `load`.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let kind = clap::ValueEnum::to_possible_value(&self.kind)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        let mut args = vec![
            "--kind".into(),
            kind,
            "--addr".into(),
            self.addr.to_string(),
            "--conns".into(),
            self.conns.to_string(),
            "--depth".into(),
            self.depth.to_string(),
            "--size".into(),
            self.size.to_string(),
            "--secs".into(),
            self.secs.to_string(),
        ];
        if let Some(frames) = self.frames {
            args.extend(["--frames".into(), frames.to_string()]);
        }
        if self.latency {
            args.push("--latency".into());
        }
        args
    }
}

/// What a run achieved; printed as JSON by `load`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    /// Echoes received and checked, over all connections.
    pub(crate) frames: u64,
    /// From the first frame sent to the last echo checked.
    pub(crate) secs: f64,
    /// Round-trip percentiles, when asked for.
    pub(crate) latency_us: Option<Percentiles>,
    /// CPU time (user + system) of the load process, filled in by `load`.
    pub(crate) client_cpu_secs: f64,
}

/// Round-trip times in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// A run that did not time its round trips.
    pub(crate) const UNTIMED: Percentiles = Percentiles {
        p50: f64::NAN,
        p99: f64::NAN,
        max: f64::NAN,
    };
}

/// Opens the spec's connections, with `TCP_NODELAY` (small frames must
/// not wait for Nagle), before any clock starts.
async fn connect_all(spec: &Spec) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        let stream = TcpStream::connect(spec.addr).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// Opens the spec's connections as enchufe clients, in the multiplexed
/// profile for the `*Mux*` kinds and the plain one otherwise.
async fn connect_clients(spec: &Spec) -> Result<Vec<Client>> {
    let profile = match spec.kind {
        Kind::ClientMux | Kind::ClientMuxPipeline => Profile::Multiplexed,
        _ => Profile::Plain,
    };
    let config = Config::default().profile(profile);
    let mut clients = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        clients.push(Client::connect_with(spec.addr, config.clone()).await?);
    }
    Ok(clients)
}

/// Runs one load and checks every echo.
///
/// # Errors
/// The first failure of any connection: [`Error::Mismatch`] for a wrong
/// echo, [`Error::Closed`] for a connection the server ended early, or the
/// client's own error.
pub(crate) async fn run(spec: &Spec) -> Result<Report> {
    let payloads = Payloads::new(spec.size);
    let stop = Arc::new(AtomicBool::new(false));
    let budget = || Budget::new(stop.clone(), spec.frames);
    let mut tasks = JoinSet::new();
    // Connections are all opened before the clock starts: the run times
    // traffic, not handshakes.
    let start = match spec.kind {
        Kind::Frames | Kind::FramesMux | Kind::Http => {
            let streams = connect_all(spec).await?;
            let start = Instant::now();
            for (conn, stream) in streams.into_iter().enumerate() {
                let (payloads, depth, budget) = (payloads.clone(), spec.depth, budget());
                match spec.kind {
                    Kind::Frames => {
                        let latency = spec.latency;
                        let gen = Generator {
                            conn,
                            payloads,
                            depth,
                            budget,
                            latency,
                        };
                        tasks.spawn(gen.run(stream))
                    }
                    Kind::FramesMux => {
                        let gen = mux::MuxGenerator {
                            conn,
                            payloads,
                            depth,
                            budget,
                        };
                        tasks.spawn(gen.run(stream))
                    }
                    _ => tasks.spawn(
                        http::HttpGenerator {
                            conn,
                            depth,
                            budget,
                        }
                        .run(stream),
                    ),
                };
            }
            start
        }
        Kind::Client | Kind::ClientMux => {
            let clients = connect_clients(spec).await?;
            spawn_loops(&mut tasks, clients, spec, &payloads, budget)
        }
        Kind::ClientPipeline | Kind::ClientMuxPipeline => {
            let clients = connect_clients(spec).await?;
            let start = Instant::now();
            for (conn, client) in clients.into_iter().enumerate() {
                tasks.spawn(pipeline_loop(
                    client,
                    conn,
                    spec.depth,
                    payloads.clone(),
                    budget(),
                ));
            }
            start
        }
        Kind::Tarpc | Kind::TarpcNagle => {
            let nodelay = spec.kind == Kind::Tarpc;
            let mut clients = Vec::with_capacity(spec.conns);
            for _ in 0..spec.conns {
                clients.push(Rpc::connect(spec.addr, nodelay).await?);
            }
            spawn_loops(&mut tasks, clients, spec, &payloads, budget)
        }
    };

    let timed = spec.frames.is_none();
    let timer = tokio::time::sleep(Duration::from_secs_f64(if timed { spec.secs } else { 0.0 }));
    tokio::pin!(timer);
    let mut armed = timed;
    let mut total = Tally::default();
    loop {
        tokio::select! {
            () = &mut timer, if armed => {
                armed = false;
                stop.store(true, Relaxed);
            }
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(tally))) => total.merge(tally),
                // Dropping `tasks` on return aborts the other connections.
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(Error::harness(format!("load task failed: {e}"))),
            },
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Report {
        frames: total.frames,
        secs,
        latency_us: spec.latency.then(|| percentiles(total.latency_ns)),
        client_cpu_secs: 0.0,
    })
}

/// Spawns `depth` request loops per client and returns when the clock starts.
fn spawn_loops<E: Echoer>(
    tasks: &mut JoinSet<Result<Tally>>,
    clients: Vec<E>,
    spec: &Spec,
    payloads: &Payloads,
    budget: impl Fn() -> Arc<Budget>,
) -> Instant {
    let start = Instant::now();
    for (conn, client) in clients.into_iter().enumerate() {
        let budget = budget();
        for task in 0..spec.depth {
            tasks.spawn(request_loop(
                client.clone(),
                conn,
                task as u64,
                payloads.clone(),
                budget.clone(),
                spec.latency,
            ));
        }
    }
    start
}

/// What one connection (or one request loop) did.
#[derive(Debug, Default)]
struct Tally {
    frames: u64,
    latency_ns: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.frames += other.frames;
        self.latency_ns.extend(other.latency_ns);
    }
}

fn percentiles(mut ns: Vec<u64>) -> Percentiles {
    ns.sort_unstable();
    let at = |q: f64| {
        let i = ((ns.len() as f64 * q) as usize).min(ns.len().saturating_sub(1));
        ns.get(i).map_or(0.0, |&v| v as f64 / 1e3)
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// How many more frames a connection may send: until the shared stop flag
/// (timed runs) or a count (tests) runs out.
#[derive(Debug)]
struct Budget {
    stop: Arc<AtomicBool>,
    left: AtomicU64,
}

impl Budget {
    fn new(stop: Arc<AtomicBool>, frames: Option<u64>) -> Arc<Budget> {
        Arc::new(Budget {
            stop,
            left: AtomicU64::new(frames.unwrap_or(u64::MAX)),
        })
    }

    /// Takes one frame from the budget; `false` when the run is over.
    fn take(&self) -> bool {
        !self.stop.load(Relaxed)
            && self
                .left
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// The hand-written pipelined generator for one connection.
#[derive(Debug)]
struct Generator {
    conn: usize,
    payloads: Payloads,
    depth: usize,
    budget: Arc<Budget>,
    latency: bool,
}

impl Generator {
    /// Writer and reader run concurrently in this one task (`try_join`), so
    /// a writer blocked on a full socket never stops echoes being read: with
    /// 1 MiB frames in flight both ways, a strict write-then-read loop would
    /// deadlock against any echo server.
    async fn run(self, stream: TcpStream) -> Result<Tally> {
        let (read, write) = stream.into_split();
        let mut echoes = FramedRead::new(read, codec());
        let mut frames = FramedWrite::new(write, codec());
        // The window: a permit per frame in flight, returned by the reader.
        let window = Semaphore::new(self.depth);
        // Send times (when timing), in order; never holds more than `depth`.
        let (sent_tx, mut sent_rx) = mpsc::channel::<Option<Instant>>(self.depth.max(1));

        let writer = async {
            let mut n = 0u64;
            while self.budget.take() {
                flight::take::<_, Bytes>(&window, &mut frames).await?;
                flight::owe(&sent_tx, self.latency.then(Instant::now)).await?;
                frames.feed(self.payloads.get(n).clone()).await?;
                n += 1;
            }
            SinkExt::<Bytes>::flush(&mut frames).await?;
            drop(sent_tx);
            // Kept open until the reader is done: dropping a write half
            // half-closes the connection.
            Ok::<_, Error>(frames)
        };

        let reader = async {
            let mut tally = Tally::default();
            while let Some(stamp) = sent_rx.recv().await {
                let echo =
                    flight::next_echo(&mut echoes, self.conn, tally.frames, &sent_rx).await?;
                let n = tally.frames;
                check(self.conn, n, &echo, self.payloads.get(n))?;
                window.add_permits(1);
                if let Some(sent) = stamp {
                    tally.latency_ns.push(sent.elapsed().as_nanos() as u64);
                }
                tally.frames += 1;
            }
            Ok(tally)
        };

        let (_frames, tally) = tokio::try_join!(writer, reader)?;
        Ok(tally)
    }
}

/// A client that echoes one payload per call, for the request loops.
trait Echoer: Clone + Send + Sync + 'static {
    fn echo(&self, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send;
}

impl Echoer for Client {
    async fn echo(&self, payload: Bytes) -> Result<Bytes> {
        Ok(self.request::<Bytes, Bytes>(payload).await?)
    }
}

impl Echoer for Rpc {
    async fn echo(&self, payload: Bytes) -> Result<Bytes> {
        Rpc::echo(self, payload).await
    }
}

/// One connection's requests through `Client::pipeline`, `depth` in
/// flight, every echo checked in order.
async fn pipeline_loop(
    client: Client,
    conn: usize,
    depth: usize,
    payloads: Payloads,
    budget: Arc<Budget>,
) -> Result<Tally> {
    let mut sent = 0u64;
    let feed = payloads.clone();
    let requests = std::iter::from_fn(move || {
        budget.take().then(|| {
            sent += 1;
            feed.get(sent - 1).clone()
        })
    });
    let mut replies = client.pipeline::<_, Bytes>(requests, depth);
    let mut tally = Tally::default();
    while let Some(echo) = replies.next().await {
        let n = tally.frames;
        check(conn, n, &echo?, payloads.get(n))?;
        tally.frames += 1;
    }
    Ok(tally)
}

/// One request at a time, forever (until the budget ends), each echo checked.
async fn request_loop<E: Echoer>(
    client: E,
    conn: usize,
    task: u64,
    payloads: Payloads,
    budget: Arc<Budget>,
    latency: bool,
) -> Result<Tally> {
    let mut tally = Tally::default();
    while budget.take() {
        // Offset by task, so that concurrent requests carry different bytes.
        let payload = payloads.get(task + tally.frames).clone();
        let sent = latency.then(Instant::now);
        let echo = client.echo(payload.clone()).await?;
        check(conn, tally.frames, &echo, &payload)?;
        if let Some(sent) = sent {
            tally.latency_ns.push(sent.elapsed().as_nanos() as u64);
        }
        tally.frames += 1;
    }
    Ok(tally)
}

#[cfg(test)]
mod tests;
