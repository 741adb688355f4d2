//! The connection loop over in-memory I/O.

use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::conn::serve;
use crate::{handler_fn, Limits, Request, Response};

/// An I/O that counts the writes made to it.
struct Counting {
    inner: tokio::io::DuplexStream,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Sixteen pipelined requests that arrive in one read are answered in
/// order with one write, not one per reply.
#[tokio::test]
async fn pipelined_replies_leave_in_order_in_one_write() {
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let io = Counting {
        inner: ours,
        writes: writes.clone(),
    };
    let handler = handler_fn(|request: Request| async move { Response::text(200, request.path()) });
    let config = Config::default();
    let server = tokio::spawn(async move {
        serve(io, &handler, &config, &CancellationToken::new()).await;
    });
    let mut requests = String::new();
    for i in 0..16 {
        requests.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    theirs.write_all(requests.as_bytes()).await.unwrap();
    let mut replies = vec![0u8; 0];
    let mut buf = [0u8; 1 << 16];
    while replies.windows(4).filter(|w| w == b"\r\n\r\n").count() < 16 || !replies.ends_with(b"/15")
    {
        let n = theirs.read(&mut buf).await.unwrap();
        assert!(n > 0);
        replies.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(replies).unwrap();
    let order: Vec<usize> = (0..16)
        .map(|i| text.find(&format!("\r\n\r\n/{i}")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(theirs);
    server.await.unwrap();
}

/// While a handler runs, the connection reads nothing more: what the
/// client can push is the pipe's capacity plus at most the head limit
/// and a read or two, not whatever it sends. (Paused time: the client's
/// write is known to be stuck when the runtime has nothing else to do.)
#[tokio::test(start_paused = true)]
async fn a_running_handler_leaves_further_input_unread() {
    const PIPE: usize = 4096;
    let (ours, mut theirs) = tokio::io::duplex(PIPE);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let opened = gate.clone();
    let handler = handler_fn(move |_: Request| {
        let gate = opened.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Response::text(200, "ok\n")
        }
    });
    let config = Config::default().limits(Limits::default().max_head(1024));
    let server = tokio::spawn(async move {
        serve(ours, &handler, &config, &CancellationToken::new()).await;
    });
    theirs
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nX: ")
        .await
        .unwrap();
    let mut sent = 0;
    while sent < 1 << 20 {
        match tokio::time::timeout(Duration::from_secs(1), theirs.write(&[b'a'; 512])).await {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break,
        }
    }
    assert!(sent <= PIPE + 1024 + 16 * 1024, "{sent} bytes taken");
    // Once it answers, reading resumes: the long head is refused.
    gate.add_permits(1);
    let mut reply = Vec::new();
    theirs.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("HTTP/1.1 431 "), "{reply}");
    server.await.unwrap();
}
