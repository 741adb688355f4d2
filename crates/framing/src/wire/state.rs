//! [`Wire`]'s state: its I/O, read buffers, write queue and limits.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::budget::{self, MemoryBudget};
use super::split::{LengthPrefix, Split};
use crate::Config;

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
    pub(super) io: Io,
    /// Finds the messages in `rbuf` (unused for [`LengthPrefix`], which is
    /// the wire's own path below).
    pub(super) split: C,
    pub(super) max: usize,
    /// Frames over `max` and up to this are streamed (0: none).
    pub(super) stream_max: u64,
    /// Bytes read and not yet returned as frames (small frames only).
    /// Unallocated while the connection is idle.
    pub(super) rbuf: BytesMut,
    /// The large frame whose body is arriving into its own buffer.
    pub(super) large: Option<Large>,
    /// The limit shared with other wires on what large frames still
    /// arriving hold (none: each is bounded by the frame limit alone).
    pub(super) budget: Option<MemoryBudget>,
    /// Output ready to write, in order, before `tail`: frozen stretches of
    /// the write buffer and large bodies queued without a copy.
    pub(super) segments: VecDeque<Bytes>,
    /// Output being assembled: headers and small bodies.
    pub(super) tail: BytesMut,
    /// Bytes in `segments` and `tail`: what this connection has queued.
    pub(super) queued: usize,
    /// Bytes written to the I/O so far (progress, for stall detection).
    pub(super) written: u64,
    /// The other end closed its writing side (a read returned 0).
    pub(super) read_closed: bool,
    /// Bytes read from the I/O, and frames queued for writing, for the
    /// `metrics` feature's counters ([`crate::meter`]): plain adds, read by
    /// the driver when it waits, never sent anywhere per frame.
    #[cfg(feature = "metrics")]
    pub(super) bytes_read: u64,
    #[cfg(feature = "metrics")]
    pub(super) frames_written: u64,
}

#[derive(Debug)]
pub(super) struct Large {
    /// Declared payload length (a stream: the body bytes still to hand out).
    pub(super) len: usize,
    pub(super) body: BytesMut,
    /// What `body` holds of the wire's [`MemoryBudget`], given back when
    /// the frame is handed out or dropped.
    pub(super) charge: budget::Charge,
    /// This frame's body is streamed ([`Wire::poll_chunk`]), not buffered.
    pub(super) stream: Option<Stream>,
}

#[derive(Debug)]
pub(super) struct Stream {
    /// The declared length.
    pub(super) total: u64,
    /// [`Wire::take_stream`] has not reported it yet.
    pub(super) announced: bool,
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
