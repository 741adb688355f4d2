//! Streamed frame bodies (plain profile, opt-in): a frame declared longer
//! than the frame limit, and within [`Config::max_stream_length`], is handed
//! out in chunks as its bytes arrive instead of being buffered whole; and a
//! frame can be written from chunks, header first. Memory stays bounded by a
//! chunk whatever the frame's length (up to `u32::MAX`, the most a header
//! can say): the course's file protocol (a 4-byte size, then the file) over
//! the same wire as ordinary messages.
//!
//! ```text
//!   00 00 10 00 | 4096 body bytes ...          (limit 1024, streams to 1 GiB)
//!   next_frame() -> None, take_stream() -> Some(4096)
//!   poll_chunk() -> chunk, chunk, ..., None    (then frames again)
//! ```
//!
//! [`Config::max_stream_length`]: crate::Config::max_stream_length

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::limits::LARGE_FRAME;
use super::split::Split;
use super::state::{Large, Stream, Wire};
use crate::{Error, Malformed, Result, HEADER_LEN};

/// What [`Wire::poll_next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole frame's payload.
    Frame(BytesMut),
    /// A streamed frame of this many body bytes began: take them with
    /// [`Wire::poll_chunk`].
    Stream(u64),
    /// The other end closed its writing side between frames.
    Eof,
}

/// The most a streamed body's chunk holds: one read's worth, so a stream
/// costs this much memory at a time on the receiving side.
pub const STREAM_CHUNK: usize = 64 * 1024;

impl<Io: AsyncRead + AsyncWrite + Unpin, C: Split> Wire<Io, C> {
    /// Sets [`Config::max_stream_length`](crate::Config::max_stream_length)
    /// for this wire (plain profile only: a multiplexed frame's header would
    /// be streamed as body).
    pub fn set_max_stream_length(&mut self, bytes: u64) {
        self.stream_max = bytes.min(u64::from(u32::MAX));
    }

    /// A header over the frame limit and within the stream limit was read
    /// (`declared` bytes of body follow): hand its body out in chunks.
    pub(super) fn start_stream(&mut self, declared: usize) {
        self.rbuf.advance(HEADER_LEN);
        self.large = Some(Large {
            len: declared,
            body: BytesMut::new(),
            charge: Default::default(),
            stream: Some(Stream {
                total: declared as u64,
                announced: false,
            }),
        });
    }

    /// Whether a streamed body is being handed out.
    pub fn is_streaming(&self) -> bool {
        self.large.as_ref().is_some_and(|l| l.stream.is_some())
    }

    /// A streamed frame began: its declared length, once. Ask after
    /// [`Wire::next_frame`] returned `None`; then take the body with
    /// [`Wire::poll_chunk`] before asking for frames again.
    pub fn take_stream(&mut self) -> Option<u64> {
        let stream = self.large.as_mut()?.stream.as_mut()?;
        if stream.announced {
            return None;
        }
        stream.announced = true;
        Some(stream.total)
    }

    /// The next frame, the start of a streamed one, or the clean end: what
    /// [`Wire::poll_frame`] does for a wire whose streams are on.
    ///
    /// # Errors
    /// As [`Wire::poll_frame`].
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Next>> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Poll::Ready(Ok(Next::Frame(frame)));
            }
            if let Some(len) = self.take_stream() {
                return Poll::Ready(Ok(Next::Stream(len)));
            }
            if self.is_streaming() {
                return Poll::Ready(Err(Error::Malformed(Malformed::StreamUnread)));
            }
            if self.read_closed {
                return Poll::Ready(self.eof().map(|_| Next::Eof));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// The next chunk of the streamed body (at most [`STREAM_CHUNK`]
    /// bytes): `Ok(None)` once it is all handed out (frames can be read
    /// again), or when no stream is under way.
    ///
    /// # Errors
    /// [`Error::UnexpectedEof`] when the stream ends inside the body,
    /// [`Error::Io`].
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        let Some(large) = self.large.as_mut().filter(|l| l.stream.is_some()) else {
            return Poll::Ready(Ok(None));
        };
        if large.len == 0 {
            self.large = None;
            return Poll::Ready(Ok(None));
        }
        if !self.rbuf.is_empty() {
            let n = self.rbuf.len().min(large.len).min(STREAM_CHUNK);
            large.len -= n;
            let chunk = self.rbuf.split_to(n).freeze();
            if self.rbuf.is_empty() {
                self.rbuf = BytesMut::new();
            }
            return Poll::Ready(Ok(Some(chunk)));
        }
        if self.read_closed {
            return Poll::Ready(self.eof().map(|_| None));
        }
        let want = large.len.min(STREAM_CHUNK);
        let mut chunk = BytesMut::with_capacity(want);
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut chunk
        ))?;
        if n == 0 {
            self.read_closed = true;
            return Poll::Ready(self.eof().map(|_| None));
        }
        #[cfg(feature = "metrics")]
        {
            self.bytes_read += n as u64;
        }
        if chunk.len() > large.len {
            // The buffer had more room than the body needed: the rest starts
            // the next frame.
            self.rbuf.extend_from_slice(&chunk[large.len..]);
            chunk.truncate(large.len);
        }
        large.len -= chunk.len();
        Poll::Ready(Ok(Some(chunk.freeze())))
    }

    /// [`Wire::poll_chunk`] as an async fn.
    ///
    /// # Errors
    /// As [`Wire::poll_chunk`].
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Queues the header of a frame whose `len` body bytes follow with
    /// [`Wire::write_chunk`] (exactly `len` of them, before any other frame:
    /// the other end counts). Not checked against the frame limit: a stream
    /// may be longer, up to `u32::MAX`.
    ///
    /// # Errors
    /// [`Error::TooLargeToSend`] when `len` is over `u32::MAX`.
    pub fn write_stream_header(&mut self, len: u64) -> Result<()> {
        let Ok(len) = u32::try_from(len) else {
            return Err(Error::TooLargeToSend {
                len,
                limit: u32::MAX as usize,
            });
        };
        self.tail.reserve(HEADER_LEN);
        self.tail.extend_from_slice(&len.to_be_bytes());
        self.queued += HEADER_LEN;
        #[cfg(feature = "metrics")]
        {
            self.frames_written += 1;
        }
        Ok(())
    }

    /// Queues body bytes of a streamed frame (after
    /// [`Wire::write_stream_header`]); chunks of [`LARGE_FRAME`] or more
    /// are not copied.
    pub fn write_chunk(&mut self, chunk: &Bytes) {
        self.push_body(chunk, chunk.len() < LARGE_FRAME);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::wire::tests::framed;
    use crate::{Config, OutFrame};

    #[tokio::test]
    async fn a_frame_over_the_limit_streams_in_bounded_chunks_then_frames_resume() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let config = Config::default()
            .max_frame_length(16)
            .max_stream_length(1 << 20);
        let mut wire = Wire::new(a, &config);
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = framed(b"before");
        bytes.extend(framed(&body));
        bytes.extend(framed(b"after"));
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(7_919) {
                b.write_all(piece).await.unwrap();
            }
            b
        });
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"before");
        assert_eq!(wire.next_frame().unwrap(), None);
        // Not announced until a header has been read.
        let mut got = Vec::new();
        let next = std::future::poll_fn(|cx| wire.poll_next(cx)).await.unwrap();
        assert_eq!(next, Next::Stream(300_000));
        assert_eq!(wire.take_stream(), None, "announced once");
        while let Some(chunk) = wire.chunk().await.unwrap() {
            assert!(chunk.len() <= STREAM_CHUNK);
            assert!(wire.read_capacity() <= 2 * STREAM_CHUNK);
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, body);
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"after");
        drop(writer.await.unwrap());
        assert_eq!(wire.recv().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stream_cut_short_is_unexpected_eof_and_streams_are_off_by_default() {
        let (a, mut b) = tokio::io::duplex(1024);
        let config = Config::default().max_frame_length(4).max_stream_length(100);
        let mut wire = Wire::new(a, &config);
        b.write_all(&[0, 0, 0, 50, 1, 2, 3]).await.unwrap();
        drop(b);
        let next = std::future::poll_fn(|cx| wire.poll_next(cx)).await.unwrap();
        assert_eq!(next, Next::Stream(50));
        assert_eq!(&wire.chunk().await.unwrap().unwrap()[..], &[1, 2, 3]);
        let err = wire.chunk().await.unwrap_err();
        crate::wire::tests::assert_cut(&err, 54, 7);

        // Over the stream limit, or with streams off: the usual error.
        for config in [
            Config::default().max_frame_length(4).max_stream_length(49),
            Config::default().max_frame_length(4),
        ] {
            let (a, mut b) = tokio::io::duplex(1024);
            let mut wire = Wire::new(a, &config);
            b.write_all(&[0, 0, 0, 50]).await.unwrap();
            assert!(wire.recv().await.unwrap_err().is_frame_too_large());
        }
    }

    #[tokio::test]
    async fn a_streamed_frame_is_written_header_then_chunks_without_copy() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut out = Wire::new(a, &Config::default().max_frame_length(8));
        let mut back = Wire::new(b, &Config::default().max_frame_length(1 << 20));
        out.write_stream_header(100_000).unwrap();
        out.write_chunk(&Bytes::from(vec![1u8; 70_000]));
        out.write_chunk(&Bytes::from(vec![2u8; 30_000]));
        out.write(&OutFrame::plain(Bytes::from_static(b"next")))
            .unwrap();
        assert_eq!(out.queued(), 4 + 100_000 + 4 + 4);
        out.flush().await.unwrap();
        let frame = back.recv().await.unwrap().unwrap();
        assert_eq!(frame.len(), 100_000);
        assert!(frame[..70_000].iter().all(|&b| b == 1) && frame[70_000..].iter().all(|&b| b == 2));
        assert_eq!(&back.recv().await.unwrap().unwrap()[..], b"next");
        assert!(out.write_stream_header(u64::from(u32::MAX) + 1).is_err());
    }
}
