//! `Wire` writes over an I/O without vectored writes (a custom stream, a
//! compression or TLS wrapper that only implements `poll_write`): large bodies are queued as segments of their
//! own, and no empty segment may reach such an I/O, where a write of zero
//! bytes is `WriteZero` and ends the connection. Found by the `wire_e2e` fuzz
//! target: two streamed chunks of 64 KiB in a row.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use enchufe_framing::{Bytes, Config, OutFrame, Wire, LARGE_FRAME};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream, ReadBuf};

/// A duplex stream that hides its vectored writes.
struct Scalar(DuplexStream);

impl AsyncRead for Scalar {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Scalar {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn large_bodies_in_a_row_reach_an_io_without_vectored_writes() {
    let (io, mut other) = tokio::io::duplex(1 << 20);
    let mut wire = Wire::new(Scalar(io), &Config::default().max_frame_length(1 << 20));
    let chunk = Bytes::from(vec![7u8; LARGE_FRAME]);

    // A streamed frame: its header, then two large chunks, nothing between.
    wire.write_stream_header(2 * LARGE_FRAME as u64).unwrap();
    wire.write_chunk(&chunk);
    wire.write_chunk(&chunk);
    // Then an ordinary large frame after a flush, when nothing is queued.
    std::future::poll_fn(|cx| wire.poll_flush(cx))
        .await
        .unwrap();
    wire.write(&OutFrame::plain(chunk.clone())).unwrap();
    wire.write_chunk(&chunk); // as if another stream's body followed
    std::future::poll_fn(|cx| wire.poll_flush(cx))
        .await
        .unwrap();

    let mut got = vec![0u8; 4 + 2 * LARGE_FRAME + 4 + 2 * LARGE_FRAME];
    other.read_exact(&mut got).await.unwrap();
    let (stream, frame) = got.split_at(4 + 2 * LARGE_FRAME);
    assert_eq!(&stream[..4], &(2 * LARGE_FRAME as u32).to_be_bytes());
    assert_eq!(&frame[..4], &(LARGE_FRAME as u32).to_be_bytes());
    assert!(stream[4..].iter().chain(&frame[4..]).all(|&b| b == 7));
}
