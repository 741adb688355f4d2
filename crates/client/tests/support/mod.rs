//! What the client crate's integration tests share: a time limit on every
//! body, and scripted servers on 127.0.0.1:0.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::mux_peer::MuxPeer;

/// Every test body runs under this limit, so a bug shows as a failure, not a hang.
const TEST_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

/// A listener on 127.0.0.1:0 that accepts one connection and runs `script`
/// on it. Await the handle to see the script's assertions.
pub(crate) async fn listen<F, Fut>(script: F) -> (SocketAddr, JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await;
    });
    (addr, task)
}

/// [`listen`] for a server that speaks the multiplexed profile: the hellos
/// are exchanged (and the client's checked) before `script` runs.
pub(crate) async fn mux_server<F, Fut>(script: F) -> (SocketAddr, JoinHandle<()>)
where
    F: FnOnce(MuxPeer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    listen(|stream| async move { script(MuxPeer::answer(stream).await).await }).await
}
