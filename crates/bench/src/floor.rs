//! The floor: the echo server a careful engineer writes by hand on
//! tokio-util, with nothing a framework adds. enchufe's target is to cost no
//! more than this.
//!
//! One task per connection; it reads a frame, `feed`s the echo into the write
//! buffer, and flushes only when the read buffer holds no further complete
//! frame, so a pipelining client's burst goes back in one `write`.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest frame the floor, the generator and tarpc's transport accept:
/// 16 MiB, above the largest workload (1 MiB) and enchufe's default limit
/// (8 MiB), so the floor never refuses what enchufe accepts.
pub(crate) const MAX_FRAME: usize = 16 << 20;

/// The codec every hand-written side uses: 4-byte big-endian length, then
/// the payload (`LengthDelimitedCodec`'s defaults, enchufe's wire format).
pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Accepts until the process ends. Connection tasks are not tracked: the
/// floor is stopped by ending its process, and tracking them is work the
/// hand-written floor would not do.
pub(crate) async fn serve(listener: TcpListener) {
    accept_each(listener, connection).await;
}

/// The accept loop every hand-written server of the harness runs (the
/// floor, hyper's, the TLS and WebSocket rivals): until its task ends,
/// each connection with `TCP_NODELAY` (small echoes must not wait for
/// Nagle; enchufe sets it too) in a task of its own, untracked. On an
/// accept error (EMFILE and friends) it waits for a connection to go,
/// 1 ms doubling up to 1 s, as enchufe does.
pub(crate) async fn accept_each<F, Fut>(listener: TcpListener, mut serve: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_millis(1);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(1);
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream));
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Echoes every frame until the client closes or sends something malformed.
pub(crate) async fn connection<Io: AsyncRead + AsyncWrite + Unpin>(io: Io) {
    let mut framed = Framed::new(io, codec());
    while let Some(Ok(frame)) = framed.next().await {
        if framed.feed(frame.freeze()).await.is_err() {
            return;
        }
        if !holds_frame(framed.read_buffer()) && SinkExt::<Bytes>::flush(&mut framed).await.is_err()
        {
            return;
        }
    }
}

/// Whether `buf` (the read buffer, starting at a length prefix) holds one
/// whole frame, so the next `next()` returns without reading the socket.
pub(crate) fn holds_frame(buf: &[u8]) -> bool {
    match buf.first_chunk::<4>() {
        Some(len) => buf.len() - 4 >= u32::from_be_bytes(*len) as usize,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::holds_frame;

    #[test]
    fn a_frame_is_whole_only_with_its_header_and_every_byte() {
        assert!(!holds_frame(b""));
        assert!(!holds_frame(&[0, 0, 0]));
        assert!(holds_frame(&[0, 0, 0, 0]));
        assert!(!holds_frame(&[0, 0, 0, 3, b'a', b'b']));
        assert!(holds_frame(&[0, 0, 0, 3, b'a', b'b', b'c']));
        assert!(holds_frame(&[0, 0, 0, 1, b'a', 0, 0]));
        assert!(!holds_frame(&[0, 0x10, 0, 0, b'a']));
    }
}
