//! [`Body`]: one streamed frame's body, as it arrives.

use std::io;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use crate::{Error, Malformed, Result, HEADER_LEN};

/// How many chunks wait between the connection and a [`Body`]'s reader: with
/// chunks of at most [`STREAM_CHUNK`](crate::STREAM_CHUNK), a body holds at
/// most this many of them in memory (256 KiB).
pub const BODY_CHUNKS: usize = 4;

/// Where the connection puts a [`Body`]'s chunks.
pub type BodySender = mpsc::Sender<Result<Bytes>>;

/// The body of one streamed frame (a frame declared longer than the frame
/// limit, within `max_stream_length`), handed out in chunks as its bytes
/// arrive: memory stays bounded by a few chunks whatever its length.
///
/// Read it as a `Stream` of `Bytes` ([`Body::chunk`]), as an `AsyncRead`, or
/// straight into a writer ([`Body::copy_to`]). A body dropped before its end
/// is skipped by the connection (read and discarded, never buffered).
///
/// ```
/// use bytes::Bytes;
/// use enchufe::framing::Body;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe::framing::Result<()> {
/// let (tx, mut body) = Body::channel(5);
/// tx.send(Ok(Bytes::from_static(b"ho"))).await.unwrap();
/// tx.send(Ok(Bytes::from_static(b"la!"))).await.unwrap();
/// drop(tx);
/// let mut out = Vec::new();
/// assert_eq!(body.copy_to(&mut out).await?, 5);
/// assert_eq!(out, b"hola!");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Body {
    len: u64,
    received: u64,
    rx: mpsc::Receiver<Result<Bytes>>,
    /// What `poll_read` has not handed out yet of the last chunk.
    current: Bytes,
    failed: bool,
}

impl Body {
    /// A body of `len` bytes and the sender its chunks come through (at
    /// most [`BODY_CHUNKS`] waiting). The sender must send exactly `len`
    /// bytes; fewer, then dropped, is [`Error::UnexpectedEof`] to the reader.
    pub fn channel(len: u64) -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(BODY_CHUNKS);
        let body = Body {
            len,
            received: 0,
            rx,
            current: Bytes::new(),
            failed: false,
        };
        (tx, body)
    }

    /// The body's declared length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty (declared length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes not yet handed out.
    pub fn remaining(&self) -> u64 {
        self.len - self.received + self.current.len() as u64
    }

    /// The next chunk: `Ok(None)` at the end of the body.
    ///
    /// # Errors
    /// [`Error::UnexpectedEof`] when the connection ended inside the body;
    /// the connection's read error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        std::future::poll_fn(|cx| poll_chunk(self, cx)).await
    }

    /// Writes the rest of the body into `writer` (and flushes it); returns
    /// the bytes written.
    ///
    /// # Errors
    /// As [`Body::chunk`], and the writer's errors as [`Error::Io`].
    pub async fn copy_to<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<u64> {
        let mut written = 0;
        while let Some(chunk) = self.chunk().await? {
            writer.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        writer.flush().await?;
        Ok(written)
    }
}

impl Chunks for Body {
    fn rest(&mut self) -> &mut Bytes {
        &mut self.current
    }

    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        if self.failed || self.received == self.len {
            return Poll::Ready(Ok(None));
        }
        let error = match ready!(self.rx.poll_recv(cx)) {
            Some(Ok(chunk)) if chunk.len() as u64 <= self.len - self.received => {
                self.received += chunk.len() as u64;
                return Poll::Ready(Ok(Some(chunk)));
            }
            Some(Ok(_)) => Error::Malformed(Malformed::StreamTooLong),
            Some(Err(e)) => e,
            // The connection ended inside the frame.
            None => Error::UnexpectedEof {
                expected: HEADER_LEN as u64 + self.len,
                received: HEADER_LEN as u64 + self.received,
            },
        };
        // Any error ends the body: it reads as ended from now on.
        self.failed = true;
        Poll::Ready(Err(error))
    }
}

crate::chunked_body_io!(Body);

/// A body that arrives in chunks: this crate's [`Body`], and the HTTP
/// server's request body. [`poll_chunk`] hands out its chunks, the rest of
/// the last one first; [`chunked_body_io!`](crate::chunked_body_io) makes
/// it a [`Stream`](futures::Stream) of them and an [`AsyncRead`](tokio::io::AsyncRead) of its bytes.
#[doc(hidden)]
pub trait Chunks {
    /// What `poll_read` has not handed out yet of the last chunk.
    fn rest(&mut self) -> &mut Bytes;

    /// The next chunk from where the body comes from (not the rest);
    /// `None` at the end of the body.
    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>>;
}

/// The next chunk of a body of [`Chunks`]: the rest of the last one, if
/// `poll_read` left some, else the next from where the body comes from;
/// `None` at the end of the body.
#[doc(hidden)]
pub fn poll_chunk<B: Chunks>(body: &mut B, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
    let rest = body.rest();
    if !rest.is_empty() {
        return Poll::Ready(Ok(Some(std::mem::take(rest))));
    }
    body.poll_next_chunk(cx)
}

/// Makes a body of [`Chunks`] a [`Stream`](futures::Stream) of its chunks ([`poll_chunk`])
/// and an [`AsyncRead`](tokio::io::AsyncRead) of its bytes ([`poll_read_chunks`]): one copy for
/// this crate's [`Body`] and the HTTP server's request body (a trait of
/// another crate cannot be implemented for every `Chunks` at once). Hidden,
/// not covered by semver.
#[doc(hidden)]
#[macro_export]
macro_rules! chunked_body_io {
    ($body:ty) => {
        impl $crate::__body_io::Stream for $body {
            type Item = $crate::Result<$crate::Bytes>;

            fn poll_next(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::option::Option<Self::Item>> {
                $crate::poll_chunk(self.get_mut(), cx).map(::std::result::Result::transpose)
            }
        }

        impl $crate::__body_io::AsyncRead for $body {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut $crate::__body_io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                $crate::poll_read_chunks(self.get_mut(), cx, buf)
            }
        }
    };
}

/// [`AsyncRead::poll_read`](tokio::io::AsyncRead::poll_read) for a body of [`Chunks`]: hands out the rest of
/// the last chunk, then the next. An I/O error comes out as itself; any
/// other (a cut or overlong body, a malformed chunk) as
/// [`io::ErrorKind::UnexpectedEof`] holding the error.
#[doc(hidden)]
pub fn poll_read_chunks<B: Chunks>(
    body: &mut B,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if body.rest().is_empty() {
        match ready!(body.poll_next_chunk(cx)) {
            Ok(Some(chunk)) => *body.rest() = chunk,
            Ok(None) => return Poll::Ready(Ok(())),
            Err(Error::Io(e)) => return Poll::Ready(Err(e)),
            Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, e))),
        }
    }
    let rest = body.rest();
    let n = rest.len().min(buf.remaining());
    buf.put_slice(&rest[..n]);
    rest.advance(n);
    Poll::Ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn reads_as_async_read_and_reports_a_cut_body() {
        let (tx, mut body) = Body::channel(6);
        tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"de"))).await.unwrap();
        drop(tx);
        let mut got = [0u8; 2];
        body.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ab");
        assert_eq!(body.remaining(), 4);
        let mut rest = Vec::new();
        let err = body.read_to_end(&mut rest).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(rest, b"cde");
    }

    #[tokio::test]
    async fn more_bytes_than_declared_is_an_error() {
        let (tx, mut body) = Body::channel(2);
        tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        assert!(matches!(
            body.chunk().await,
            Err(Error::Malformed(Malformed::StreamTooLong))
        ));
        assert_eq!(body.chunk().await.unwrap(), None);
    }
}
