//! What the network benches share: one runtime shape, the echo server they
//! measure, and the pipelined request driver.
//!
//! Criterion drives each bench's future with `Runtime::block_on`, so the
//! client side runs on the bench's main thread and the server (and any
//! spawned reader) on the runtime's 2 workers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use enchufe::server::Config as ServerConfig;
use enchufe::{handler_fn, Client, ServerHandle};
use futures::future::join_all;
use tokio::runtime::Runtime;

/// The criterion settings every network bench uses: 20 samples, 1 s of
/// warm-up, 3 s of measurement (loopback round trips are noisy; more samples
/// buy little on a shared 2-core machine).
pub(crate) fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

/// The multi-threaded runtime every network bench uses, built once per
/// bench binary: 2 workers, the size of the VM the published numbers come
/// from.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An enchufe `Server` on `127.0.0.1:0` echoing every frame as `Bytes`, as
/// `examples/echo_server.rs` does: no UTF-8 or JSON work in the handler, so
/// the bench measures the framework.
pub(crate) async fn echo_server(config: ServerConfig) -> ServerHandle {
    enchufe::Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .serve(handler_fn(|frame: Bytes, _conn| async move {
            Ok::<_, std::convert::Infallible>(Some(frame))
        }))
}

/// About `iters` echoes of `payload` with `slots.len()` requests in flight:
/// each slot is a loop of sequential `request`s on its own handle (clones
/// of one `Client` share its connection), so a slot sends its next request
/// as soon as its reply is in, with no barrier between rounds. Returns the
/// time scaled to exactly `iters` requests, for criterion's per-iteration
/// figure to be the time of one request.
pub(crate) async fn pipelined(slots: &[Client], payload: &Bytes, iters: u64) -> Duration {
    let per_slot = iters.div_ceil(slots.len() as u64).max(1);
    let start = Instant::now();
    join_all(slots.iter().map(|client| async move {
        for _ in 0..per_slot {
            let reply: Bytes = client.request(payload.clone()).await.unwrap();
            debug_assert_eq!(reply.len(), payload.len());
            black_box(reply);
        }
    }))
    .await;
    let requests = per_slot * slots.len() as u64;
    start.elapsed().mul_f64(iters as f64 / requests as f64)
}
