//! Writing: frames queued, small bodies copied, large ones sent as they
//! are in one vectored write.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::limits::{LARGE_FRAME, MAX_IOVECS, WRITE_START};
use super::split::Split;
use super::state::Wire;
use crate::{Error, OutFrame, Result, HEADER_LEN};

impl<Io: AsyncRead + AsyncWrite + Unpin, C: Split> Wire<Io, C> {
    /// Queues a frame for writing (nothing is written until
    /// [`Wire::poll_flush`]). Bodies of [`LARGE_FRAME`] or more are queued
    /// without a copy. With a codec other than [`LengthPrefix`](super::split::LengthPrefix) no length
    /// goes before it: the frame's prefix and body leave as they are.
    ///
    /// # Errors
    /// [`Error::TooLargeToSend`] when the payload is over the limit;
    /// nothing is queued.
    pub fn write(&mut self, frame: &OutFrame) -> Result<()> {
        let len = frame.len();
        if len > self.max {
            return Err(Error::TooLargeToSend {
                len: len as u64,
                limit: self.max,
            });
        }
        let body = frame.body();
        let small = body.len() < LARGE_FRAME;
        // A constant: 4, or 0 for a codec that frames its own messages.
        let len_bytes = if C::LENGTH_PREFIX { HEADER_LEN } else { 0 };
        let need = len_bytes + frame.prefix().len() + if small { body.len() } else { 0 };
        if self.tail.capacity() - self.tail.len() < need {
            self.tail.reserve(need.max(WRITE_START));
        }
        // Length and prefix in one copy: `len <= self.max <= u32::MAX`,
        // checked above.
        let prefix = frame.prefix();
        let mut head = [0u8; HEADER_LEN + crate::mux::HEADER_LEN];
        head[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        head[HEADER_LEN..HEADER_LEN + prefix.len()].copy_from_slice(prefix);
        self.tail
            .extend_from_slice(&head[HEADER_LEN - len_bytes..HEADER_LEN + prefix.len()]);
        self.push_body(body, small);
        self.queued += len_bytes + prefix.len();
        #[cfg(feature = "metrics")]
        {
            self.frames_written += 1;
        }
        Ok(())
    }

    /// Queues body bytes after what is queued: copied into the tail when
    /// `small`, else as a segment of their own (no copy).
    #[inline]
    pub(super) fn push_body(&mut self, body: &Bytes, small: bool) {
        if small {
            self.tail.extend_from_slice(body);
        } else {
            // An empty tail (nothing queued since the last large body or
            // flush) must not become a segment: an I/O without vectored
            // writes is handed the first segment alone, and an empty write
            // is WriteZero.
            if !self.tail.is_empty() {
                self.segments.push_back(self.tail.split().freeze());
            }
            self.segments.push_back(body.clone());
        }
        self.queued += body.len();
    }

    /// Bytes queued and not yet written: what this connection holds for the
    /// other end.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Bytes written to the I/O since the wire was made; a driver compares
    /// two readings to tell a slow writer from a stalled one.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes everything queued and flushes the I/O.
    ///
    /// # Errors
    /// [`Error::Io`] (a write of zero bytes is `WriteZero`).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while self.queued > 0 {
            let n = ready!(self.poll_write_some(cx))?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
            }
            self.consume(n);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        if self.tail.capacity() > 0 {
            // Everything left: give the buffer back until the next batch.
            self.tail = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// [`Wire::poll_flush`] as an async fn.
    ///
    /// # Errors
    /// As [`Wire::poll_flush`].
    pub async fn flush(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Flushes, then shuts the writing side down (half-close): the other end
    /// reads EOF after our last frame and can still send to us.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        ready!(self.poll_flush(cx))?;
        Poll::Ready(ready!(Pin::new(&mut self.io).poll_shutdown(cx)).map_err(Error::Io))
    }

    /// [`Wire::poll_shutdown`] as an async fn.
    ///
    /// # Errors
    /// As [`Wire::poll_shutdown`].
    pub async fn shutdown(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_shutdown(cx)).await
    }

    /// One write: vectored over the queued segments and the tail when the
    /// I/O supports it, else the first of them.
    pub(super) fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let io = Pin::new(&mut self.io);
        if self.segments.is_empty() {
            return io.poll_write(cx, &self.tail);
        }
        if !io.is_write_vectored() {
            let first = self.segments.front().map_or(&self.tail[..], |b| &b[..]);
            return io.poll_write(cx, first);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for segment in self.segments.iter().take(MAX_IOVECS) {
            slices[n] = IoSlice::new(segment);
            n += 1;
        }
        if n < MAX_IOVECS && !self.tail.is_empty() {
            slices[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        io.poll_write_vectored(cx, &slices[..n])
    }

    /// Drops `n` written bytes from the front of the output.
    pub(super) fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        self.written += n as u64;
        while n > 0 {
            match self.segments.front_mut() {
                Some(front) if front.len() <= n => {
                    n -= front.len();
                    self.segments.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    return;
                }
                None => {
                    self.tail.advance(n);
                    return;
                }
            }
        }
    }
}
