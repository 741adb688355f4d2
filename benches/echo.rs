//! Request/reply round-trips over loopback TCP (127.0.0.1), a 32-byte text
//! message echoed back:
//!
//! - `echo/enchufe_plain`: `Server` + `Client::request`, one at a time;
//! - `echo/enchufe_mux_32`: the multiplexed profile, 32 requests in flight
//!   from 32 clones of one `Client`; the time reported is *per request*;
//! - `echo/floor_framed`: the floor, a hand-written tokio-util
//!   `Framed<TcpStream, LengthDelimitedCodec>` echo server and client, one
//!   at a time.
//!
//! All three share one multi-threaded runtime (2 workers), built once.
//!
//! ```text
//! cargo bench --bench echo
//! cargo bench --bench echo -- --quick     # a short, indicative run
//! ```
//!
//! Results and how to read them: `BENCHMARKS.md`.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_main, Criterion};
use enchufe::client::{Config as ClientConfig, Profile};
use enchufe::server::Config as ServerConfig;
use enchufe::{handler_fn, Client, Server, ServerHandle};
use futures::future::join_all;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Requests in flight at once in the multiplexed bench.
const IN_FLIGHT: usize = 32;

fn message() -> String {
    "0123456789abcdef".repeat(2)
}

async fn enchufe_server(config: ServerConfig) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .serve(handler_fn(|req: String, _conn| async move {
            Ok::<_, Infallible>(Some(req))
        }))
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

fn echo(c: &mut Criterion) {
    let rt: Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let msg = message();
    assert_eq!(msg.len(), 32);

    let mut group = c.benchmark_group("echo");

    // (a) enchufe, plain profile, sequential.
    let (plain_server, plain_client) = rt.block_on(async {
        let server = enchufe_server(ServerConfig::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        (server, client)
    });
    group.bench_function("enchufe_plain", |b| {
        let (client, msg) = (&plain_client, &msg);
        b.to_async(&rt).iter(|| async move {
            let reply: String = client.request(msg).await.unwrap();
            debug_assert_eq!(reply.len(), 32);
            black_box(reply)
        });
    });

    // (b) enchufe, multiplexed profile, IN_FLIGHT concurrent requests from
    // clones; the time returned to criterion is scaled to one request.
    let (mux_server, mux_clients) = rt.block_on(async {
        let server = enchufe_server(ServerConfig::default().profile(Profile::Multiplexed)).await;
        let client = Client::connect_with(
            server.local_addr(),
            ClientConfig::default().profile(Profile::Multiplexed),
        )
        .await
        .unwrap();
        let clients = vec![client; IN_FLIGHT];
        (server, clients)
    });
    group.bench_function(format!("enchufe_mux_{IN_FLIGHT}"), |b| {
        let (clients, msg) = (&mux_clients, &msg);
        b.to_async(&rt).iter_custom(|iters| async move {
            let rounds = iters.div_ceil(IN_FLIGHT as u64).max(1);
            let start = Instant::now();
            for _ in 0..rounds {
                let replies = join_all(
                    clients
                        .iter()
                        .map(|client| client.request::<_, String>(msg)),
                )
                .await;
                for reply in replies {
                    black_box(reply.unwrap());
                }
            }
            let requests = rounds * IN_FLIGHT as u64;
            start.elapsed().mul_f64(iters as f64 / requests as f64)
        });
    });

    // (c) the floor: hand-written Framed client against the Framed server.
    let floor = rt.block_on(async {
        let addr = floor_server().await;
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Arc::new(Mutex::new(Framed::new(stream, LengthDelimitedCodec::new())))
    });
    let payload = Bytes::from(msg.clone());
    group.bench_function("floor_framed", |b| {
        b.to_async(&rt).iter_custom(|iters| {
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

    rt.block_on(async {
        drop(plain_client);
        drop(mux_clients);
        plain_server.shutdown().await;
        mux_server.shutdown().await;
    });
}

/// `criterion_group!` makes a `pub fn` that `missing_docs` would flag and
/// that cannot carry a doc comment; in a private module it is not exported.
mod group {
    use super::{echo, Criterion, Duration};

    criterion::criterion_group! {
        name = benches;
        config = Criterion::default()
            .sample_size(20)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        targets = echo
    }
}
criterion_main!(group::benches);
