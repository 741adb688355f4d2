use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

use crate::{Config, Decode, Encode, Error, FrameCodec, OutFrame, Result};

/// Most frames one [`FrameWriter::send_batch`] feeds before it flushes.
///
/// The codec already writes out its buffer whenever it passes 8 KiB, so this
/// cap only matters for bursts of small frames: 64 frames of a few bytes is
/// well under a 1500-byte MTU's worth of syscalls saved per flush, yet keeps
/// the first frame of a burst from waiting behind an endless queue.
pub const MAX_BATCH: usize = 64;

/// One framed stream: typed send and receive over any `AsyncRead + AsyncWrite`.
///
/// `Transport` is a [`Stream`] of frames and a [`Sink`] of frames too, so
/// `futures` combinators work on it. Servers and clients never touch the raw
/// bytes: they go through this type or its halves.
///
/// # Examples
///
/// ```
/// use enchufe::framing::Transport;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe::framing::Result<()> {
/// let (a, b) = tokio::io::duplex(1024);
/// let mut a = Transport::new(a);
/// let mut b = Transport::new(b);
/// a.send_msg("ping").await?;
/// assert_eq!(b.recv_msg::<String>().await?.as_deref(), Some("ping"));
/// drop(a); // a clean close between frames is `None`, not an error
/// assert!(b.recv().await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Transport<Io> {
    inner: Framed<Io, FrameCodec>,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Transport<Io> {
    /// A transport with the default [`Config`].
    pub fn new(io: Io) -> Self {
        Self::with_config(io, &Config::default())
    }

    /// A transport with the given limits.
    pub fn with_config(io: Io, config: &Config) -> Self {
        Self {
            inner: Framed::new(io, FrameCodec::new(config)),
        }
    }

    /// Receives the next frame's payload; `Ok(None)` on a clean close
    /// (the peer closed between frames).
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`], [`Error::UnexpectedEof`] or [`Error::Io`];
    /// each ends the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe: a frame is never lost if the future is dropped, partial
    /// data stays in the read buffer.
    pub async fn recv(&mut self) -> Result<Option<BytesMut>> {
        self.inner.next().await.transpose()
    }

    /// Receives the next frame and decodes it as `M`; `Ok(None)` on a clean close.
    ///
    /// # Errors
    /// As [`Transport::recv`], plus the decode errors of `M`, which do not end
    /// the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`Transport::recv`].
    pub async fn recv_msg<M: Decode>(&mut self) -> Result<Option<M>> {
        match self.recv().await? {
            Some(frame) => M::decode(frame).map(Some),
            None => Ok(None),
        }
    }

    /// Sends one frame and flushes it.
    ///
    /// # Errors
    /// [`Error::TooLargeToSend`] when the payload is over the limit (nothing
    /// is written), or [`Error::Io`].
    pub async fn send(&mut self, payload: Bytes) -> Result<()> {
        self.inner.send(payload).await
    }

    /// Encodes a message and sends it as one frame, flushed.
    ///
    /// # Errors
    /// As [`Transport::send`], plus [`Error::Encode`].
    pub async fn send_msg<M: Encode>(&mut self, msg: M) -> Result<()> {
        self.send(msg.encode()?).await
    }

    /// Queues one frame without flushing; call [`Transport::flush`] after the
    /// last frame of a batch.
    ///
    /// # Errors
    /// As [`Transport::send`].
    pub async fn feed(&mut self, payload: Bytes) -> Result<()> {
        self.inner.feed(payload).await
    }

    /// Writes out every queued frame.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub async fn flush(&mut self) -> Result<()> {
        SinkExt::<Bytes>::flush(&mut self.inner).await
    }

    /// Splits into a reader and a writer that can move to different tasks.
    ///
    /// This uses `tokio::io::split`, which puts a light lock between the two
    /// halves. For a `TcpStream`, prefer `TcpStream::into_split` with
    /// [`FrameReader::new`] and [`FrameWriter::new`], which has none.
    pub fn split(self) -> (FrameReader<ReadHalf<Io>>, FrameWriter<WriteHalf<Io>>) {
        let parts = self.inner.into_parts();
        let config = Config::default().max_frame_length(parts.codec.max_frame_length());
        let (read, write) = tokio::io::split(parts.io);
        // The reader keeps the codec itself: it may be in the middle of a
        // frame whose header it already consumed (after a cancelled `recv`).
        let mut reader = FrameReader {
            inner: FramedRead::new(read, parts.codec),
        };
        // Bytes already read past the last frame belong to the reader...
        *reader.inner.read_buffer_mut() = parts.read_buf;
        // ...and frames fed but not yet flushed, to the writer.
        let mut writer = FrameWriter::new(write, &config);
        *writer.inner.write_buffer_mut() = parts.write_buf;
        (reader, writer)
    }

    /// The underlying I/O object.
    pub fn get_ref(&self) -> &Io {
        self.inner.get_ref()
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Stream for Transport<Io> {
    type Item = Result<BytesMut>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for Transport<Io> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Sink::<Bytes>::poll_ready(Pin::new(&mut self.inner), cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<()> {
        Sink::<Bytes>::start_send(Pin::new(&mut self.inner), item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Sink::<Bytes>::poll_flush(Pin::new(&mut self.inner), cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Sink::<Bytes>::poll_close(Pin::new(&mut self.inner), cx)
    }
}

/// The receiving half of a framed stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: FramedRead<R, FrameCodec>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames read from `io` with the given limits.
    pub fn new(io: R, config: &Config) -> Self {
        Self {
            inner: FramedRead::new(io, FrameCodec::new(config)),
        }
    }

    /// Receives the next frame's payload; `Ok(None)` on a clean close.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`], [`Error::UnexpectedEof`] or [`Error::Io`];
    /// each ends the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe: partial frames stay in the read buffer.
    pub async fn recv(&mut self) -> Result<Option<BytesMut>> {
        self.inner.next().await.transpose()
    }

    /// Receives the next frame and decodes it as `M`; `Ok(None)` on a clean close.
    ///
    /// # Errors
    /// As [`FrameReader::recv`], plus the decode errors of `M`, which do not
    /// end the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`FrameReader::recv`].
    pub async fn recv_msg<M: Decode>(&mut self) -> Result<Option<M>> {
        match self.recv().await? {
            Some(frame) => M::decode(frame).map(Some),
            None => Ok(None),
        }
    }

    /// Bytes read from the I/O and not yet returned as a frame; its capacity
    /// is the memory this reader holds.
    pub fn read_buffer(&self) -> &BytesMut {
        self.inner.read_buffer()
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }
}

impl<R: AsyncRead + Unpin> Stream for FrameReader<R> {
    type Item = Result<BytesMut>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// The sending half of a framed stream, with batched writes.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: FramedWrite<W, FrameCodec>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Frames written to `io` with the given limits.
    pub fn new(io: W, config: &Config) -> Self {
        Self {
            inner: FramedWrite::new(io, FrameCodec::new(config)),
        }
    }

    /// Sends one frame and flushes it.
    ///
    /// # Errors
    /// [`Error::TooLargeToSend`] when the payload is over the limit (nothing is
    /// written), or [`Error::Io`].
    pub async fn send(&mut self, frame: impl Into<OutFrame>) -> Result<()> {
        self.inner.send(frame.into()).await
    }

    /// Encodes a message and sends it, flushed.
    ///
    /// # Errors
    /// As [`FrameWriter::send`], plus [`Error::Encode`].
    pub async fn send_msg<M: Encode>(&mut self, msg: M) -> Result<()> {
        self.send(msg.encode()?).await
    }

    /// Queues one frame without flushing.
    ///
    /// # Errors
    /// As [`FrameWriter::send`].
    pub async fn feed(&mut self, frame: impl Into<OutFrame>) -> Result<()> {
        self.inner.feed(frame.into()).await
    }

    /// Writes out every queued frame.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub async fn flush(&mut self) -> Result<()> {
        SinkExt::<OutFrame>::flush(&mut self.inner).await
    }

    /// Writes `first` and then every frame `next` hands over without waiting
    /// (up to [`MAX_BATCH`]), then flushes once: one syscall for a burst
    /// instead of one per frame. Returns how many frames were written.
    ///
    /// `next` is typically `|| rx.try_recv().ok()` on the writer task's queue.
    ///
    /// # Errors
    /// As [`FrameWriter::send`]. A frame over the limit fails the batch after
    /// the frames before it were queued.
    pub async fn send_batch<F: Into<OutFrame>>(
        &mut self,
        first: impl Into<OutFrame>,
        mut next: impl FnMut() -> Option<F>,
    ) -> Result<usize> {
        self.inner.feed(first.into()).await?;
        let mut written = 1;
        while written < MAX_BATCH {
            match next() {
                Some(frame) => {
                    self.inner.feed(frame.into()).await?;
                    written += 1;
                }
                None => break,
            }
        }
        self.flush().await?;
        Ok(written)
    }

    /// Flushes and shuts down the writing side (half-close): the peer reads
    /// EOF after the last frame, and can still send to us.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub async fn close(&mut self) -> Result<()> {
        SinkExt::<OutFrame>::close(&mut self.inner).await
    }

    /// Bytes encoded and not yet written to the I/O.
    pub fn write_buffer(&self) -> &BytesMut {
        self.inner.write_buffer()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }
}

impl<W: AsyncWrite + Unpin> Sink<Bytes> for FrameWriter<W> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Sink::<Bytes>::poll_ready(Pin::new(&mut self.inner), cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<()> {
        Sink::<Bytes>::start_send(Pin::new(&mut self.inner), item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Sink::<Bytes>::poll_flush(Pin::new(&mut self.inner), cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Sink::<Bytes>::poll_close(Pin::new(&mut self.inner), cx)
    }
}
