//! Helpers shared by the integration tests: bounded test bodies and servers
//! on port 0.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use enchufe::{handler_fn, Handler, Server, ServerHandle};
use enchufe_server::Config;

pub mod examples;
pub mod files;
pub mod interop;
pub mod lab;
pub mod log;
pub mod mux_peer;

/// Every test body runs under this limit, so a bug shows as a failure, not a hang.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs `body` within [`TEST_LIMIT`], failing the test if it takes longer.
pub async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

/// A server on 127.0.0.1:0 running `handler` with `config`.
pub async fn serve(handler: impl Handler, config: Config) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .serve(handler)
}

/// An echo server on 127.0.0.1:0 that answers `echo:<msg>`.
pub async fn echo_server(config: Config) -> ServerHandle {
    echo_server_at("127.0.0.1:0".parse().unwrap(), config).await
}

/// [`echo_server`] on a given address: a server coming back on the port it
/// had. Binding is retried (bounded by the caller's `bounded`), since the
/// port can be briefly held by the connections of the server before.
pub async fn echo_server_at(addr: SocketAddr, config: Config) -> ServerHandle {
    bind_at(addr)
        .await
        .with_config(config)
        .serve(handler_fn(|msg: String, _conn| async move {
            Ok::<_, Infallible>(Some(format!("echo:{msg}")))
        }))
}

/// Binds `addr`, retrying (bounded by the caller's `bounded`) while the port
/// is still held by the connections of the server that had it before.
pub async fn bind_at(addr: SocketAddr) -> Server {
    loop {
        match Server::bind(addr).await {
            Ok(server) => return server,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Waits (polling, bounded by the caller's `bounded`) until `cond` holds.
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
