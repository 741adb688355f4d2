//! Reading: frames out of the bytes read, growing with what arrived.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::budget::{self};
use super::limits::{LARGE_FRAME, LARGE_START, READ_CHUNK};
use super::split::Split;
use super::state::{Large, Wire};
use crate::{Error, Malformed, Result, HEADER_LEN};

impl<Io: AsyncRead + AsyncWrite + Unpin, C: Split> Wire<Io, C> {
    /// The next frame among the bytes already read, without any I/O.
    /// `Ok(None)` when no complete frame is buffered.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] on a header over the limit (nothing is
    /// allocated for it; the stream cannot go on).
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>> {
        if !C::LENGTH_PREFIX {
            // A constant: the length-prefixed wire compiles without this.
            return self.split.split(&mut self.rbuf, self.max);
        }
        if let Some(large) = &self.large {
            if large.stream.is_some() || large.body.len() < large.len {
                return Ok(None);
            }
            return Ok(self.large.take().map(|large| large.body));
        }
        if self.rbuf.len() < HEADER_LEN {
            return Ok(None);
        }
        let declared = (&self.rbuf[..HEADER_LEN]).get_u32() as usize;
        if declared > self.max {
            if declared as u64 <= self.stream_max {
                self.start_stream(declared);
                return Ok(None);
            }
            let header = [self.rbuf[0], self.rbuf[1], self.rbuf[2], self.rbuf[3]];
            return Err(Error::oversize_header(header, self.max));
        }
        if self.rbuf.len() >= HEADER_LEN + declared {
            self.rbuf.advance(HEADER_LEN);
            return Ok(Some(self.rbuf.split_to(declared)));
        }
        if declared >= LARGE_FRAME {
            // Everything buffered belongs to this frame (it is incomplete):
            // move it to the frame's own buffer, sized by what arrived.
            self.rbuf.advance(HEADER_LEN);
            let have = self.rbuf.len();
            // A buffer given back (`recycle`) if one fits (and the budget,
            // if any, has room for it): no allocation, no page faults; else
            // one sized by what arrived, within the uncharged allowance.
            let recycled = crate::recycle::take(declared).and_then(|buf| self.afford(buf));
            let mut body = recycled.unwrap_or_else(|| {
                let first = LARGE_START.max(2 * have).min(budget::UNCHARGED.max(have));
                BytesMut::with_capacity(declared.min(first))
            });
            body.extend_from_slice(&self.rbuf);
            self.rbuf = BytesMut::new();
            let charge = budget::Charge::new(self.budget.as_ref(), body.capacity());
            self.large = Some(Large {
                len: declared,
                body,
                charge,
                stream: None,
            });
        }
        Ok(None)
    }

    /// `buf` (a recycled buffer) if the budget has room for all of it; it
    /// is given back to the pool otherwise.
    #[cold]
    pub(super) fn afford(&self, buf: BytesMut) -> Option<BytesMut> {
        match &self.budget {
            Some(budget) if budget.held() + buf.capacity() > budget.limit() => {
                crate::recycle::give_back(buf.freeze());
                None
            }
            _ => Some(buf),
        }
    }

    /// The next frame: from the buffer, or reading the I/O. `Ok(None)` on a
    /// clean close (EOF between frames).
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`], [`Error::UnexpectedEof`] (EOF inside a
    /// frame), [`Error::Io`]; each ends the stream.
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<BytesMut>>> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Poll::Ready(Ok(Some(frame)));
            }
            if self.is_streaming() {
                // The body must be taken first (`poll_chunk`); reading it
                // into the frame buffer would hold it all.
                return Poll::Ready(Err(Error::Malformed(Malformed::StreamUnread)));
            }
            if self.read_closed {
                return Poll::Ready(self.eof());
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// [`Wire::poll_frame`] as an async fn.
    ///
    /// # Errors
    /// As [`Wire::poll_frame`].
    ///
    /// # Cancel safety
    /// Cancel-safe: bytes read stay buffered.
    pub async fn recv(&mut self) -> Result<Option<BytesMut>> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Whether part of a frame has arrived and the rest has not: bytes
    /// buffered that are no complete frame, or a large frame's body under
    /// way (a streamed body is not a frame in this sense: it is handed out
    /// as it comes). Meaningful once [`Wire::next_frame`] returned `None`.
    pub fn has_partial_frame(&self) -> bool {
        match &self.large {
            Some(large) => large.stream.is_none(),
            None => !self.rbuf.is_empty(),
        }
    }

    /// Whether the other end has closed its writing side (EOF was read).
    pub fn is_read_closed(&self) -> bool {
        self.read_closed
    }

    /// Reads what has arrived into the read buffers without handing frames
    /// out, while fewer than `bound` bytes are buffered: a driver that is
    /// not taking frames (a handler runs) still learns that the other end
    /// reset the connection. EOF is only noted ([`Wire::is_read_closed`]);
    /// frames read this way come out of [`Wire::next_frame`] later, in
    /// order, and the EOF after them. Past `bound`, or with a whole large
    /// frame or a streamed body waiting to be taken, it reads nothing (the
    /// socket's own buffer holds the rest, and a reset then shows only
    /// when reading resumes). The buffer may pass `bound` by one read (at
    /// most 8 KiB, or the rest of the large frame arriving).
    ///
    /// # Errors
    /// [`Error::Io`] when the read fails (a reset): the stream cannot go
    /// on.
    pub fn watch(&mut self, cx: &mut Context<'_>, bound: usize) -> Result<()> {
        loop {
            let (buffered, full) = match &self.large {
                // A stream's body is the role's to take, chunk by chunk; a
                // whole large frame waiting is read-ahead enough (what follows
                // it would be copied out of its buffer).
                Some(large) => (
                    self.rbuf.len() + large.body.len(),
                    large.stream.is_some() || large.body.len() >= large.len,
                ),
                None => (self.rbuf.len(), false),
            };
            if self.read_closed || full || buffered >= bound {
                return Ok(());
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Err(Error::Io(e)),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// What EOF means now: a clean close between frames, or a cut frame.
    pub(super) fn eof(&self) -> Result<Option<BytesMut>> {
        if let Some(large) = &self.large {
            if let Some(stream) = &large.stream {
                return Err(Error::UnexpectedEof {
                    expected: HEADER_LEN as u64 + stream.total,
                    received: HEADER_LEN as u64 + stream.total - large.len as u64,
                });
            }
            return Err(Error::UnexpectedEof {
                expected: (HEADER_LEN + large.len) as u64,
                received: (HEADER_LEN + large.body.len()) as u64,
            });
        }
        match self.rbuf.len() {
            0 => Ok(None),
            // A codec of its own: how long the message would have been is
            // not known, only that it needed more.
            n if !C::LENGTH_PREFIX => Err(Error::UnexpectedEof {
                expected: n as u64 + 1,
                received: n as u64,
            }),
            n if n < HEADER_LEN => Err(Error::UnexpectedEof {
                expected: HEADER_LEN as u64,
                received: n as u64,
            }),
            n => Err(Error::UnexpectedEof {
                expected: (HEADER_LEN + (&self.rbuf[..HEADER_LEN]).get_u32() as usize) as u64,
                received: n as u64,
            }),
        }
    }

    /// Reads once from the I/O into the right buffer. `Ready(Ok(0))` at EOF.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let Some(large) = &mut self.large {
            if large.body.len() == large.body.capacity() {
                // Double with what arrived, never past the declared length:
                // the last step stops at exactly the frame (doubling past
                // it, a 1 MiB frame held 2 MiB and a 16 MiB `recycle` pool
                // kept half as many of them).
                let remaining = large.len - large.body.len();
                let grow = large.body.len().max(LARGE_START);
                let exact = grow >= remaining;
                let capacity = if exact {
                    large.len
                } else {
                    large.body.capacity() + grow
                };
                if !large.charge.grow_to(capacity, cx) {
                    // Over the shared budget: read nothing (the sender is
                    // held back by TCP) until bytes are given back.
                    return Poll::Pending;
                }
                grow_exactly(&mut large.body, capacity);
                large.charge.settle(large.body.capacity());
            }
            // Never past this frame, though a recycled buffer has room for
            // more: what was read past it had to be copied back to `rbuf`,
            // and the next large frame copied it out again (4% of a file
            // receiver's CPU in `perf`). The next header costs one more
            // read instead, per large frame.
            let remaining = large.len - large.body.len();
            if remaining == 0 {
                // The frame is whole: nothing to read into it, and a read
                // with no room would look like EOF. (No caller gets here
                // today: each takes a whole frame before reading.)
                return Poll::Ready(Ok(0));
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                &mut (&mut large.body).limit(remaining)
            ))?;
            #[cfg(feature = "metrics")]
            {
                self.bytes_read += n as u64;
            }
            self.read_closed |= n == 0;
            return Poll::Ready(Ok(n));
        }
        if self.rbuf.capacity() == 0 {
            // Idle: read through the stack, so that a connection waiting for
            // bytes holds no buffer (and a spurious wakeup allocates none).
            // Uninitialised: zeroing 8 KiB per wakeup showed as the largest
            // single cost per frame in callgrind (a read never needs it).
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut stack);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            #[cfg(feature = "metrics")]
            {
                self.bytes_read += n as u64;
            }
            if n > 0 {
                self.rbuf.reserve(READ_CHUNK.max(n));
                self.rbuf.extend_from_slice(buf.filled());
            }
            self.read_closed |= n == 0;
            return Poll::Ready(Ok(n));
        }
        if self.rbuf.len() == self.rbuf.capacity() {
            // Frames here are under LARGE_FRAME (another codec: under its
            // own limit, which `Split::split` enforces), so this is bounded.
            self.rbuf.reserve(READ_CHUNK);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
            Poll::Pending => {
                if self.rbuf.is_empty() {
                    // Nothing buffered and nothing to read: free the buffer
                    // for as long as the connection stays quiet.
                    self.rbuf = BytesMut::new();
                }
                Poll::Pending
            }
            Poll::Ready(Ok(n)) => {
                #[cfg(feature = "metrics")]
                {
                    self.bytes_read += n as u64;
                }
                self.read_closed |= n == 0;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

/// Makes `buf`'s capacity `capacity` (at least), keeping its bytes, through
/// `realloc` (`Vec::reserve_exact`), where `BytesMut::reserve` would double
/// past it and a new buffer would copy and free the old one. For a buffer
/// the allocator mapped on its own (glibc: 128 KiB and more), `realloc` is
/// `mremap`: no copy, nothing freed. A freed mapped block is what raises
/// glibc's mmap threshold to its size, after which the next large buffers
/// come from heaps that keep freed memory: 1,000 connections growing 8 MiB
/// frames then held 30-90 MiB more than their buffers.
fn grow_exactly(buf: &mut BytesMut, capacity: usize) {
    // Both conversions take the allocation as it is (a large frame's
    // buffer is never shared while it fills).
    let mut vec = Vec::from(std::mem::take(buf));
    vec.reserve_exact(capacity.saturating_sub(vec.len()));
    *buf = BytesMut::from(bytes::Bytes::from(vec));
}
