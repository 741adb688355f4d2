//! Multiplexed requests through `enchufe::Client` (profile `Multiplexed`)
//! against an enchufe `Server` in the same profile, over loopback TCP
//! (127.0.0.1), a 32-byte message echoed back:
//!
//! - `mux/1x64`: one connection, 64 requests in flight (the server's
//!   default `max_in_flight` per connection);
//! - `mux/32x16`: 32 connections (one `Client` each), 16 in flight on each.
//!
//! Each request in flight is a loop of `request` calls on its own clone of
//! its connection's `Client`. The time reported is **per request**, and
//! `Throughput::Elements(1)` turns it into requests per second. One
//! multi-threaded runtime (2 workers), built once; the clients run on the
//! bench's main thread, the server on the workers.
//!
//! ```text
//! cargo bench --bench mux
//! cargo bench --bench mux -- --quick     # a short, indicative run
//! ```
//!
//! Results and how to read them: `BENCHMARKS.md`.

mod support;

use bytes::Bytes;
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use enchufe::client::Config as ClientConfig;
use enchufe::server::Config as ServerConfig;
use enchufe::{Client, Profile};
use futures::future::join_all;

/// (connections, requests in flight on each).
const SHAPES: [(usize, usize); 2] = [(1, 64), (32, 16)];

fn mux(c: &mut Criterion) {
    let rt = support::runtime();
    let payload = Bytes::from_static(b"0123456789abcdef0123456789abcdef");
    let server = rt.block_on(support::echo_server(
        ServerConfig::default().profile(Profile::Multiplexed),
    ));

    let mut group = c.benchmark_group("mux");
    group.throughput(Throughput::Elements(1));
    for (conns, depth) in SHAPES {
        // `conns` connections, each shared by `depth` clones.
        let slots: Vec<Client> = rt.block_on(async {
            let config = ClientConfig::default().profile(Profile::Multiplexed);
            let clients = join_all(
                (0..conns).map(|_| Client::connect_with(server.local_addr(), config.clone())),
            )
            .await;
            clients
                .into_iter()
                .flat_map(|client| vec![client.unwrap(); depth])
                .collect()
        });
        group.bench_function(
            BenchmarkId::from_parameter(format!("{conns}x{depth}")),
            |b| {
                let (slots, payload) = (&slots, &payload);
                b.to_async(&rt)
                    .iter_custom(|iters| support::pipelined(slots, payload, iters));
            },
        );
        // Dropped inside the runtime: the drivers end as their handles go.
        rt.block_on(async move { drop(slots) });
    }
    group.finish();
    rt.block_on(server.shutdown());
}

/// `criterion_group!` makes a `pub fn` that `missing_docs` would flag and
/// that cannot carry a doc comment; in a private module it is not exported.
mod group {
    use super::mux;

    criterion::criterion_group! {
        name = benches;
        config = crate::support::criterion();
        targets = mux
    }
}
criterion_main!(group::benches);
