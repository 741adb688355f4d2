//! Request/reply over loopback TCP (127.0.0.1), every frame echoed back by
//! an enchufe `Server` (`Bytes` in, `Bytes` out) or by the floor.
//!
//! One at a time, a 32-byte message (time per round trip):
//!
//! - `echo/enchufe_plain`: `Server` + `Client::request`, plain profile;
//! - `echo/floor_framed`: the floor, a hand-written tokio-util
//!   `Framed<TcpStream, LengthDelimitedCodec>` echo server and client.
//!
//! Pipelined, by payload size (time per echo, `Throughput::Bytes` = the
//! payload): `echo_pipelined/{16B,1KiB,64KiB,1MiB}`, the plain-profile
//! `Client` with 16 requests in flight up to 1 KiB and 4 above (the
//! comparison harness's plain workloads), each from a clone of one `Client`.
//!
//! The multiplexed profile has its own bench, `benches/mux.rs`. All cases
//! share one multi-threaded runtime (2 workers), built once.
//!
//! ```text
//! cargo bench --bench echo
//! cargo bench --bench echo -- --quick        # a short, indicative run
//! cargo bench --bench echo -- echo_pipelined # only the payload sweep
//! ```
//!
//! Results and how to read them: `BENCHMARKS.md`.

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use enchufe::client::Config as ClientConfig;
use enchufe::server::Config as ServerConfig;
use enchufe::{Client, Profile};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The pipelined sweep: payload size, its label, requests in flight.
const SWEEP: [(usize, &str, usize); 4] = [
    (16, "16B", 16),
    (KIB, "1KiB", 16),
    (64 * KIB, "64KiB", 4),
    (MIB, "1MiB", 4),
];

fn message() -> String {
    "0123456789abcdef".repeat(2)
}

/// The floor: an echo server written directly on tokio-util, 4-byte
/// big-endian length prefix (`LengthDelimitedCodec`'s default).
async fn floor_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                while let Some(Ok(frame)) = framed.next().await {
                    if framed.send(frame.freeze()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One round trip at a time: enchufe (plain) and the floor.
fn echo(c: &mut Criterion, rt: &Runtime, client: &Client) {
    let msg = message();
    assert_eq!(msg.len(), 32);

    let mut group = c.benchmark_group("echo");
    group.bench_function("enchufe_plain", |b| {
        let msg = &msg;
        b.to_async(rt).iter(|| async move {
            let reply: String = client.request(msg).await.unwrap();
            debug_assert_eq!(reply.len(), 32);
            black_box(reply)
        });
    });

    // The floor: hand-written Framed client against the Framed server.
    let floor = rt.block_on(async {
        let addr = floor_server().await;
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Arc::new(Mutex::new(Framed::new(stream, LengthDelimitedCodec::new())))
    });
    let payload = Bytes::from(msg.clone());
    group.bench_function("floor_framed", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (floor, payload) = (floor.clone(), payload.clone());
            async move {
                // Locked once, outside the timing.
                let mut framed = floor.lock().await;
                let start = Instant::now();
                for _ in 0..iters {
                    framed.send(payload.clone()).await.unwrap();
                    let reply = framed.next().await.unwrap().unwrap();
                    debug_assert_eq!(reply.len(), 32);
                    black_box(reply);
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

/// Echo by payload size, with several requests in flight on one connection.
fn echo_pipelined(c: &mut Criterion, rt: &Runtime, client: &Client) {
    let mut group = c.benchmark_group("echo_pipelined");
    for (size, label, depth) in SWEEP {
        let payload = Bytes::from(vec![0x5a; size]);
        let slots = vec![client.clone(); depth];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            let (slots, payload) = (&slots, &payload);
            b.to_async(rt)
                .iter_custom(|iters| support::pipelined(slots, payload, iters));
        });
    }
    group.finish();
}

fn all(c: &mut Criterion) {
    let rt = support::runtime();
    let (server, client) = rt.block_on(async {
        // Pinned: this bench measures the plain profile, whatever the defaults.
        let server = support::echo_server(ServerConfig::default().profile(Profile::Plain)).await;
        let config = ClientConfig::default().profile(Profile::Plain);
        let client = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        (server, client)
    });
    echo(c, &rt, &client);
    echo_pipelined(c, &rt, &client);
    rt.block_on(async {
        drop(client);
        server.shutdown().await;
    });
}

/// `criterion_group!` makes a `pub fn` that `missing_docs` would flag and
/// that cannot carry a doc comment; in a private module it is not exported.
mod group {
    use super::all;

    criterion::criterion_group! {
        name = benches;
        config = crate::support::criterion();
        targets = all
    }
}
criterion_main!(group::benches);
