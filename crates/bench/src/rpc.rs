//! tarpc's side: an echo service over tarpc's serde transport (bincode
//! inside length-delimited frames) on TCP, served and called the way
//! tarpc's own examples do it.
//!
//! Both ends set `TCP_NODELAY`, as enchufe and the floor do, unless
//! `nodelay` is off: tarpc's own `tcp::listen` / `tcp::connect` leave Nagle
//! on (the same `Framed` length-delimited transport otherwise), which is
//! how its users run it, so the harness measures both.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context, serde_transport};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use crate::error::Result;
use crate::floor::codec;

/// The service: one call, the payload back. `Bytes` is serialized as a byte
/// string (one length and a copy), not element by element as `Vec<u8>`
/// would be, so tarpc is not handicapped by the payload type.
#[tarpc::service]
trait Echo {
    async fn echo(payload: Bytes) -> Bytes;
}

#[derive(Clone)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, payload: Bytes) -> Bytes {
        payload
    }
}

/// Accepts until the process ends; each connection is a `BaseChannel` with
/// tarpc's defaults, each request's response future spawned (tarpc's usual
/// way to serve requests concurrently).
pub(crate) async fn serve(listener: TcpListener, nodelay: bool) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(1);
        let _ = stream.set_nodelay(nodelay);
        let transport = serde_transport::new(Framed::new(stream, codec()), Bincode::default());
        let requests = BaseChannel::with_defaults(transport).execute(EchoServer.serve());
        tokio::spawn(requests.for_each(|response| async {
            tokio::spawn(response);
        }));
    }
}

/// A connected client: a cheap cloneable handle; its dispatch task runs on
/// the runtime until every clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Rpc(EchoClient);

impl Rpc {
    pub(crate) async fn connect(addr: std::net::SocketAddr, nodelay: bool) -> Result<Rpc> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(nodelay)?;
        let transport = serde_transport::new(Framed::new(stream, codec()), Bincode::default());
        Ok(Rpc(
            EchoClient::new(client::Config::default(), transport).spawn()
        ))
    }

    pub(crate) async fn echo(&self, payload: Bytes) -> Result<Bytes> {
        Ok(self.0.echo(context::current(), payload).await?)
    }
}
