//! WebSocket: enchufe's front door (`Server::web`) and a tokio-tungstenite
//! echo, driven by tokio-tungstenite's client.

use std::future::ready;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enchufe::{Profile, Server, ServerConfig};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{pipeline, Served, Spec};
use crate::error::{Error, Result};
use crate::payload::{check, Payloads};

fn ws_err(e: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::harness(format!("websocket: {e}"))
}

/// enchufe's server with frames and WebSocket on one port, each binary
/// message one frame, echoed by a `Bytes` handler: what `examples/chat`
/// and the reliability suite's `serve` do.
pub(crate) async fn enchufe(addr: SocketAddr) -> Result<Served> {
    let server = Server::bind(addr)
        .await
        .map_err(|e| Error::harness(e.to_string()))?
        .with_config(ServerConfig::default().profile(Profile::Plain))
        .web(enchufe::ws::Options::default());
    super::echo(server)
}

/// The hand-written rival: accept, upgrade with tokio-tungstenite, echo
/// each binary message with `feed`, flushing only when no further message
/// is ready (the floor's batching).
pub(crate) async fn tungstenite(addr: SocketAddr) -> Result<Served> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((
        local,
        tokio::spawn(crate::floor::accept_each(listener, echo)),
    ))
}

async fn echo(stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    loop {
        let next = match ws.next().now_or_never() {
            Some(next) => next,
            None => {
                if ws.flush().await.is_err() {
                    return;
                }
                ws.next().await
            }
        };
        match next {
            Some(Ok(msg @ Message::Binary(_))) => {
                if ws.feed(msg).await.is_err() {
                    return;
                }
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            Some(Ok(_)) => {}
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<WebSocketStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .map_err(ws_err)?;
    Ok(ws)
}

/// Opens `conns` WebSocket connections, then pipelines binary messages on
/// each.
pub(crate) async fn load(
    spec: &Spec,
    stop: &Arc<AtomicBool>,
    tasks: &mut JoinSet<Result<(u64, u64)>>,
) -> Result<()> {
    let payloads = Payloads::new(spec.size);
    let mut conns = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        conns.push(connect(spec.addr).await?);
    }
    for (conn, ws) in conns.into_iter().enumerate() {
        let (payloads, stop, depth) = (payloads.clone(), stop.clone(), spec.depth);
        tasks.spawn(async move {
            let (sink, stream) = ws.split();
            let sink = sink
                .sink_map_err(ws_err)
                .with(|b: Bytes| ready(Ok::<_, Error>(Message::Binary(b))));
            let echoes = stream.filter_map(|m| {
                ready(match m {
                    Ok(Message::Binary(b)) => Some(Ok(b)),
                    Ok(Message::Close(_)) => Some(Err(Error::harness("websocket closed"))),
                    Ok(_) => None,
                    Err(e) => Some(Err(ws_err(e))),
                })
            });
            let n = pipeline::run(conn, sink, Box::pin(echoes), payloads, depth, &stop).await?;
            Ok((n, 0))
        });
    }
    Ok(())
}

/// `peer hold-ws`: idle WebSocket connections, each having echoed one
/// 16-byte message.
pub(crate) async fn hold(addr: SocketAddr, conns: usize, secs: f64) -> Result<()> {
    let payload = Payloads::new(16).get(0).clone();
    let held: Vec<WebSocketStream<TcpStream>> = futures::stream::iter(0..conns)
        .map(|i| {
            let payload = payload.clone();
            async move {
                let mut ws = connect(addr).await?;
                ws.send(Message::Binary(payload.clone()))
                    .await
                    .map_err(ws_err)?;
                match ws.next().await {
                    Some(Ok(Message::Binary(echo))) => check(i, 0, &echo, &payload)?,
                    other => return Err(Error::harness(format!("no echo: {other:?}"))),
                }
                Ok::<_, Error>(ws)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    println!("held {}", held.len());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    drop(held);
    Ok(())
}
