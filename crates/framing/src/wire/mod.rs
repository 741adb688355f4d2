//! [`Wire`]: the bytes of one connection, for a driver that polls.
//!
//! [`Transport`](crate::Transport) is the convenient type (a `Stream` and a
//! `Sink` of frames). `Wire` is the one a connection driver is built on: it
//! owns the I/O object unsplit, so one task reads requests and writes their
//! replies, and it spends memory only on bytes that exist:
//!
//! - **No buffer while idle.** A read into an empty, unallocated buffer goes
//!   through a stack buffer first; a read buffer that is empty when the
//!   socket has nothing more is freed. An idle connection holds no heap
//!   buffer at all.
//! - **Reads grow with what arrived, never with what was declared.** A header
//!   declaring 8 MiB reserves nothing; the body's buffer doubles as bytes
//!   come, so a connection that trickles costs what it sent.
//! - **Large frames have their own buffer** (at or above [`LARGE_FRAME`]):
//!   the frame handed out owns it, so the read buffer is not pinned by a body
//!   waiting to be echoed, and the next frame does not need a fresh one.
//! - **Many connections share one limit** for the large frames arriving
//!   ([`MemoryBudget`], optional): past it, a frame's buffer does not grow
//!   and its connection is not read until bytes are given back.
//! - **Large bodies are never copied on the way out**: their header goes into
//!   the write buffer, the body is queued as it is, and both leave in one
//!   vectored write.
//!
//! ```text
//!   read:   socket -> [rbuf: small frames] --split--> frame (BytesMut)
//!                  \-> [own buffer: one large frame] ---> frame
//!   write:  frame -> [tail: headers + small bodies] --+--> writev -> socket
//!                    [segments: frozen tails, large bodies] --^
//! ```

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{Config, Error, OutFrame, Result, HEADER_LEN};

mod budget;
mod split;
mod stream;

pub use budget::MemoryBudget;
pub use split::{LengthPrefix, Split};
pub use stream::{Next, STREAM_CHUNK};

/// Frames whose payload is at least this long are read into a buffer of
/// their own and written without a copy (header in the write buffer, body as
/// its own slice of one vectored write).
///
/// 64 KiB: below it, copying the body costs less than a second `iovec` and
/// the bookkeeping (a memcpy of 64 KiB is a few microseconds, about one
/// syscall); above it the copy and the pinned read buffer dominate.
pub const LARGE_FRAME: usize = 64 * 1024;

/// How much the read buffer grows by when it is full: the floor's
/// (tokio-util's `FramedRead`) initial capacity, so a busy connection reads
/// as much per syscall as a hand-written `Framed` loop.
const READ_CHUNK: usize = 8 * 1024;

/// First capacity of a large frame's own buffer, before it doubles with the
/// bytes that arrive.
const LARGE_START: usize = 16 * 1024;

/// Most slices handed to one vectored write (Linux accepts 1024; 64 covers a
/// batch of large bodies with their headers and keeps the array on the stack).
const MAX_IOVECS: usize = 64;

/// The first capacity of the write buffer: a batch of small replies fits
/// without regrowing.
const WRITE_START: usize = 4 * 1024;

/// One connection's framed bytes over any `AsyncRead + AsyncWrite`, for a
/// driver that polls: frames come out of [`Wire::poll_frame`] /
/// [`Wire::next_frame`], go in with [`Wire::write`], and leave with
/// [`Wire::poll_flush`].
///
/// `C` finds the messages in the bytes read ([`Split`]): length-prefixed
/// frames by default, another codec with [`Wire::with_split`].
///
/// The usual loop: take every frame already buffered (`next_frame` until
/// `None`), queue their replies with `write`, flush once, then wait for the
/// socket. That is the hand-written floor's discipline: one write syscall per
/// batch, never one per frame.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use enchufe_framing::{Config, OutFrame, Wire};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe_framing::Result<()> {
/// let (a, b) = tokio::io::duplex(1024);
/// let (mut a, mut b) = (Wire::new(a, &Config::default()), Wire::new(b, &Config::default()));
/// a.write(&OutFrame::plain(Bytes::from_static(b"hola")))?;
/// a.flush().await?;
/// assert_eq!(&b.recv().await?.expect("a frame")[..], b"hola");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Wire<Io, C = LengthPrefix> {
    io: Io,
    /// Finds the messages in `rbuf` (unused for [`LengthPrefix`], which is
    /// the wire's own path below).
    split: C,
    max: usize,
    /// Frames over `max` and up to this are streamed (0: none).
    stream_max: u64,
    /// Bytes read and not yet returned as frames (small frames only).
    /// Unallocated while the connection is idle.
    rbuf: BytesMut,
    /// The large frame whose body is arriving into its own buffer.
    large: Option<Large>,
    /// The limit shared with other wires on what large frames still
    /// arriving hold (none: each is bounded by the frame limit alone).
    budget: Option<MemoryBudget>,
    /// Output ready to write, in order, before `tail`: frozen stretches of
    /// the write buffer and large bodies queued without a copy.
    segments: VecDeque<Bytes>,
    /// Output being assembled: headers and small bodies.
    tail: BytesMut,
    /// Bytes in `segments` and `tail`: what this connection has queued.
    queued: usize,
    /// Bytes written to the I/O so far (progress, for stall detection).
    written: u64,
    /// The other end closed its writing side (a read returned 0).
    read_closed: bool,
    /// Bytes read from the I/O, and frames queued for writing, for the
    /// `metrics` feature's counters ([`crate::meter`]): plain adds, read by
    /// the driver when it waits, never sent anywhere per frame.
    #[cfg(feature = "metrics")]
    bytes_read: u64,
    #[cfg(feature = "metrics")]
    frames_written: u64,
}

#[derive(Debug)]
struct Large {
    /// Declared payload length (a stream: the body bytes still to hand out).
    len: usize,
    body: BytesMut,
    /// What `body` holds of the wire's [`MemoryBudget`], given back when
    /// the frame is handed out or dropped.
    charge: budget::Charge,
    /// This frame's body is streamed ([`Wire::poll_chunk`]), not buffered.
    stream: Option<Stream>,
}

#[derive(Debug)]
struct Stream {
    /// The declared length.
    total: u64,
    /// [`Wire::take_stream`] has not reported it yet.
    announced: bool,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Wire<Io> {
    /// A wire of length-prefixed frames over `io` with the limits of
    /// `config`. Allocates nothing.
    pub fn new(io: Io, config: &Config) -> Self {
        Wire::with_split(io, config, LengthPrefix)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin, C: Split> Wire<Io, C> {
    /// A wire over `io` whose messages `split` finds, with the limits of
    /// `config` (the frame limit bounds what is written, and is handed to
    /// `split`). Allocates nothing.
    pub fn with_split(io: Io, config: &Config, split: C) -> Self {
        Wire {
            io,
            split,
            max: config.effective_max(),
            stream_max: config.max_stream_length.min(u64::from(u32::MAX)),
            rbuf: BytesMut::new(),
            large: None,
            budget: None,
            segments: VecDeque::new(),
            tail: BytesMut::new(),
            queued: 0,
            written: 0,
            read_closed: false,
            #[cfg(feature = "metrics")]
            bytes_read: 0,
            #[cfg(feature = "metrics")]
            frames_written: 0,
        }
    }

    /// The largest payload read or written.
    pub fn max_frame_length(&self) -> usize {
        self.max
    }

    /// Shares `budget` with other wires: from the next large frame on, the
    /// bytes its buffer grows by past its first 128 KiB are taken
    /// from it, and while it has no room this wire reads nothing (the
    /// frame is complete or dropped with the wire before they are given
    /// back). Small frames and streamed bodies are not counted. `None`:
    /// no shared limit (the default).
    pub fn set_memory_budget(&mut self, budget: Option<MemoryBudget>) {
        self.budget = budget;
    }

    /// The codec that finds messages ([`Split`]).
    pub fn split(&self) -> &C {
        &self.split
    }

    /// The codec that finds messages, mutably.
    pub fn split_mut(&mut self) -> &mut C {
        &mut self.split
    }

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
    fn afford(&self, buf: BytesMut) -> Option<BytesMut> {
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
                return Poll::Ready(Err(Error::Malformed(
                    "a frame was asked for while a streamed body is unread",
                )));
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
    fn eof(&self) -> Result<Option<BytesMut>> {
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
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let Some(large) = &mut self.large {
            if large.body.len() == large.body.capacity() {
                // Double with what arrived, never past the declared length:
                // the last step allocates exactly the frame (`reserve`
                // would double past it, so a 1 MiB frame held 2 MiB and a
                // 16 MiB `recycle` pool kept half as many of them).
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
                if exact {
                    let mut exact = BytesMut::with_capacity(large.len);
                    exact.extend_from_slice(&large.body);
                    large.body = exact;
                } else {
                    large.body.reserve(grow);
                }
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

    /// Queues a frame for writing (nothing is written until
    /// [`Wire::poll_flush`]). Bodies of [`LARGE_FRAME`] or more are queued
    /// without a copy. With a codec other than [`LengthPrefix`] no length
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
    fn push_body(&mut self, body: &Bytes, small: bool) {
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
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
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
    fn consume(&mut self, mut n: usize) {
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

    /// Bytes read and not yet handed out, and their buffers' capacity: the
    /// memory this wire holds for reading.
    pub fn read_capacity(&self) -> usize {
        self.rbuf.capacity() + self.large.as_ref().map_or(0, |l| l.body.capacity())
    }

    /// The I/O object.
    pub fn get_ref(&self) -> &Io {
        &self.io
    }

    /// The I/O object, mutably (reading or writing it directly corrupts the
    /// framing).
    pub fn get_mut(&mut self) -> &mut Io {
        &mut self.io
    }
}

/// What the `metrics` feature reads; no bounds on `Io`, so that a driver's
/// `Drop` can report its last figures.
#[cfg(feature = "metrics")]
impl<Io, C> Wire<Io, C> {
    /// Frames queued, bytes read and bytes written so far (for the
    /// engine's meter; not covered by semver).
    #[doc(hidden)]
    pub fn traffic(&self) -> (u64, u64, u64) {
        (self.frames_written, self.bytes_read, self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn cfg(max: usize) -> Config {
        Config::default().max_frame_length(max)
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_batched_in_one_read() {
        let (mut raw, io) = tokio::io::duplex(64);
        let mut wire = Wire::new(io, &cfg(1024));
        let mut bytes = framed(b"hola");
        bytes.extend(framed(b""));
        bytes.extend(framed(b"adios"));
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(3) {
                raw.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            raw
        });
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"hola");
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"");
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"adios");
        drop(writer.await.unwrap());
        assert!(wire.recv().await.unwrap().is_none());
    }

    /// Serves its bytes as fast as asked, recording each read's span of
    /// the stream.
    struct Spans {
        data: Vec<u8>,
        at: usize,
        reads: Vec<(usize, usize)>,
    }

    impl AsyncRead for Spans {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(self.data.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            self.reads.push((at, at + n));
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Spans {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_large_frame_grows_to_exactly_its_length() {
        // An odd length no recycled buffer fits: the frame's own buffer
        // doubles with what arrives, and its last step stops at the length.
        let len = (5 << 20) + 7;
        let (mut raw, io) = tokio::io::duplex(64 << 10);
        let mut wire = Wire::new(io, &cfg(8 << 20));
        let writer = tokio::spawn(async move {
            raw.write_all(&framed(&vec![3; len])).await.unwrap();
            raw
        });
        let frame = wire.recv().await.unwrap().unwrap();
        assert_eq!((frame.len(), frame.capacity()), (len, len));
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_large_body_is_read_up_to_its_end_and_no_further() {
        // A buffer with room for far more than the frame, as a recycled one
        // has: the read must still stop at the frame's end, or the next
        // frame's bytes would be copied out of it.
        let large = vec![7; 3 * LARGE_FRAME];
        crate::recycle::give_back(BytesMut::with_capacity(4 * large.len()).freeze());
        let mut data = framed(&large);
        let end = data.len();
        data.extend(framed(b"next"));
        let io = Spans {
            data,
            at: 0,
            reads: Vec::new(),
        };
        let mut wire = Wire::new(io, &cfg(1 << 20));
        assert_eq!(wire.recv().await.unwrap().unwrap().len(), large.len());
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"next");
        let reads = &wire.io.reads;
        assert!(
            reads.iter().all(|&(a, b)| b <= end || a >= end),
            "a read crossed the frame's end at {end}: {reads:?}"
        );
    }

    #[tokio::test]
    async fn a_declared_length_reserves_nothing_until_bytes_arrive() {
        let (mut raw, io) = tokio::io::duplex(1 << 20);
        let max = 8 << 20;
        let mut wire = Wire::new(io, &cfg(max));
        raw.write_all(&((max - 1) as u32).to_be_bytes())
            .await
            .unwrap();
        raw.write_all(&[7; 10]).await.unwrap();
        let pending = futures::poll!(std::future::poll_fn(|cx| wire.poll_frame(cx)));
        assert!(pending.is_pending());
        assert!(
            wire.read_capacity() <= LARGE_START,
            "{} bytes held for 14 received",
            wire.read_capacity()
        );
        // It grows with what arrives: 1 MiB in, at most about 2 MiB held.
        raw.write_all(&vec![7; 1 << 20]).await.unwrap();
        for _ in 0..64 {
            let _ = futures::poll!(std::future::poll_fn(|cx| wire.poll_frame(cx)));
        }
        assert!(wire.read_capacity() <= 2 << 20, "{}", wire.read_capacity());
    }

    #[tokio::test]
    async fn wires_sharing_a_budget_wait_for_room_and_never_hold_more() {
        let budget = MemoryBudget::new(1 << 20);
        let wire = |budget: &MemoryBudget| {
            let (raw, io) = tokio::io::duplex(4 << 20);
            let mut wire = Wire::new(io, &cfg(8 << 20));
            wire.set_memory_budget(Some(budget.clone()));
            (raw, wire)
        };
        let (mut raw_a, mut a) = wire(&budget);
        let (mut raw_b, mut b) = wire(&budget);
        // Frames of 1 MiB: either alone fits, both do not.
        let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let bytes = framed(&body);
        let poll = |w: &mut Wire<_>| {
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            for _ in 0..256 {
                if let Poll::Ready(r) = w.poll_frame(&mut cx) {
                    return Some(r.unwrap().unwrap());
                }
            }
            None
        };
        // A holds most of its frame; B sends all of its and must wait.
        raw_a.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
        assert!(poll(&mut a).is_none());
        raw_b.write_all(&bytes).await.unwrap();
        assert!(poll(&mut b).is_none(), "B waits for room");
        assert!(budget.pauses() >= 1);
        assert!(budget.held() <= budget.limit(), "{}", budget.held());
        let held = a.read_capacity() + b.read_capacity();
        assert!(
            held <= (1 << 20) + 2 * budget::UNCHARGED,
            "{held} bytes held"
        );
        // A's connection ends: its bytes come back, and B's frame arrives.
        drop((a, raw_a));
        let frame = b.recv().await.unwrap().unwrap();
        assert!(frame[..] == body[..]);
        assert_eq!(budget.held(), 0, "a frame handed out gives its bytes back");
        assert!(budget.peak() <= budget.limit());
    }

    #[tokio::test]
    async fn a_large_frame_arrives_whole_in_its_own_buffer_and_the_next_follows() {
        let (mut raw, io) = tokio::io::duplex(8192);
        let mut wire = Wire::new(io, &cfg(4 << 20));
        let big: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i % 251) as u8).collect();
        let mut bytes = framed(&big);
        bytes.extend(framed(b"next"));
        tokio::spawn(async move { raw.write_all(&bytes).await.unwrap() });
        let frame = wire.recv().await.unwrap().unwrap();
        assert_eq!(&frame[..], &big[..]);
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"next");
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error_and_between_frames_is_none() {
        let (mut raw, io) = tokio::io::duplex(1 << 20);
        let mut wire = Wire::new(io, &cfg(1 << 20));
        raw.write_all(&framed(b"ok")).await.unwrap();
        raw.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(raw);
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"ok");
        let err = wire.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    expected: 13,
                    received: 6
                }
            ),
            "{err:?}"
        );

        let (raw, io) = tokio::io::duplex(64);
        let mut wire = Wire::new(io, &cfg(64));
        drop(raw);
        assert!(wire.recv().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversize_header_is_refused_before_its_body() {
        let (mut raw, io) = tokio::io::duplex(64);
        let mut wire = Wire::new(io, &cfg(100));
        raw.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let err = wire.recv().await.unwrap_err();
        assert!(matches!(
            err,
            Error::FrameTooLarge {
                declared: 0xffff_ffff,
                limit: 100
            }
        ));
        assert!(wire.read_capacity() <= READ_CHUNK);
    }

    #[tokio::test]
    async fn small_and_large_frames_leave_in_order_and_intact() {
        let (io, mut raw) = tokio::io::duplex(1 << 16);
        let mut wire = Wire::new(io, &cfg(4 << 20));
        let big = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let frames = [
            OutFrame::plain(Bytes::from_static(b"a")),
            OutFrame::plain(big.clone()),
            OutFrame::with_header(
                crate::mux::Header {
                    kind: crate::mux::Kind::Push,
                    id: 9,
                },
                big.clone(),
            ),
            OutFrame::plain(Bytes::from_static(b"z")),
        ];
        let mut expected = Vec::new();
        for frame in &frames {
            wire.write(frame).unwrap();
            expected.extend((frame.len() as u32).to_be_bytes());
            expected.extend(frame.prefix());
            expected.extend(&frame.body()[..]);
        }
        assert_eq!(wire.queued(), expected.len());
        let total = expected.len();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; total];
            raw.read_exact(&mut got).await.unwrap();
            got
        });
        wire.flush().await.unwrap();
        assert_eq!(wire.queued(), 0);
        assert_eq!(wire.written(), total as u64);
        assert!(reader.await.unwrap() == expected);
    }

    /// Messages ending in a `;`, at most 8 bytes.
    #[derive(Debug)]
    struct Semicolons;
    impl Split for Semicolons {
        fn split(&mut self, buf: &mut BytesMut, _max: usize) -> Result<Option<BytesMut>> {
            match buf.iter().position(|&b| b == b';') {
                Some(end) if end < 8 => Ok(Some(buf.split_to(end + 1))),
                None if buf.len() < 8 => Ok(None),
                _ => Err(Error::Malformed("over 8 bytes")),
            }
        }
    }

    #[tokio::test]
    async fn another_codec_splits_reads_writes_unprefixed_and_bounds_the_buffer() {
        let (mut raw, io) = tokio::io::duplex(64);
        let mut wire = Wire::with_split(io, &cfg(1024), Semicolons);
        raw.write_all(b"ab;c").await.unwrap();
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"ab;");
        raw.write_all(b"d;").await.unwrap();
        assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"cd;");
        wire.write(&OutFrame::plain(Bytes::from_static(b"ok;")))
            .unwrap();
        wire.flush().await.unwrap();
        let mut got = [0; 3];
        raw.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ok;");
        raw.write_all(b"123456789").await.unwrap();
        assert!(matches!(wire.recv().await, Err(Error::Malformed(_))));
        // EOF inside a message is not a clean close.
        let (mut raw, io) = tokio::io::duplex(64);
        let mut wire = Wire::with_split(io, &cfg(1024), Semicolons);
        raw.write_all(b"ab").await.unwrap();
        drop(raw);
        let err = wire.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    expected: 3,
                    received: 2
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn length_prefix_split_is_the_wires_rule_over_a_buffer() {
        let mut buf = BytesMut::from(&framed(b"hola")[..]);
        buf.extend_from_slice(&framed(b"")[..]);
        buf.extend_from_slice(&[0, 0, 0]);
        let mut lp = LengthPrefix;
        assert_eq!(&lp.split(&mut buf, 8).unwrap().unwrap()[..], b"hola");
        assert_eq!(&lp.split(&mut buf, 8).unwrap().unwrap()[..], b"");
        assert!(lp.split(&mut buf, 8).unwrap().is_none());
        buf.extend_from_slice(&[9]);
        assert!(lp.split(&mut buf, 8).unwrap_err().is_frame_too_large());
    }

    #[tokio::test]
    async fn an_oversize_write_is_refused_and_nothing_is_queued() {
        let (io, _raw) = tokio::io::duplex(64);
        let mut wire = Wire::new(io, &cfg(3));
        let err = wire
            .write(&OutFrame::plain(Bytes::from_static(b"four")))
            .unwrap_err();
        assert!(matches!(err, Error::TooLargeToSend { len: 4, limit: 3 }));
        assert!(err
            .to_string()
            .contains("max_frame_length of 3 bytes; nothing was sent"));
        assert_eq!(wire.queued(), 0);
    }
}
