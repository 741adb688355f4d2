//! A transport that holds written bytes until it is flushed, as TLS and
//! WebSocket streams do: the driver must retry a pending flush even when it
//! has nothing more queued itself, or the last batch never leaves.

mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::{bounded, echo_server};
use enchufe::client::{Config, Profile};
use enchufe::Client;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Accepts every write into memory; the first flush of each batch is
/// pending (and wakes at once), the second writes the batch out.
struct Buffering {
    io: TcpStream,
    held: Vec<u8>,
    pended: bool,
}

impl AsyncRead for Buffering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.held.is_empty() && !this.pended {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        while !this.held.is_empty() {
            let n = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, &this.held))?;
            this.held.drain(..n);
        }
        this.pended = false;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_pending_flush_is_retried_with_nothing_else_queued() {
    bounded(async {
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let server = echo_server(enchufe::server::Config::default().profile(profile)).await;
            let io = Buffering {
                io: TcpStream::connect(server.local_addr()).await.unwrap(),
                held: Vec::new(),
                pended: false,
            };
            let client = Client::handshake_io(io, Config::default().profile(profile))
                .await
                .unwrap();
            for i in 0..3 {
                let reply: String = client.request(format!("m{i}")).await.unwrap();
                assert_eq!(reply, format!("echo:m{i}"));
            }
            server.shutdown().await;
        }
    })
    .await;
}
