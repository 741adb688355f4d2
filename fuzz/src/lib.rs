//! What the fuzz targets share: the message types they decode into, a
//! round-trip check for the message codecs, and an in-memory I/O whose reads
//! and writes the fuzz input scripts.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use enchufe_framing::{BytesMut, Decode, Encode, Error, HEADER_LEN};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A message with every kind of serde value a user type has: strings,
/// integers of each width, floats, options, sequences, maps, enums, tuples.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub id: u64,
    pub small: i8,
    pub ratio: f64,
    pub flag: bool,
    pub tags: Vec<String>,
    pub scores: BTreeMap<String, i32>,
    pub shape: Option<Shape>,
    pub raw: Vec<u8>,
    pub pair: (u16, char),
    pub wide: i128,
}

/// The enum kinds: unit, struct, tuple and newtype variants.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Shape {
    Point,
    Circle { r: f32 },
    Pair(i64, i64),
    Named(String),
}

/// A recursive type: how deep it nests is up to the bytes, and every format
/// must stop it (at 128 levels) before the stack runs out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Tree {
    pub label: String,
    pub children: Vec<Tree>,
}

/// Decodes `data` as `M`; a value that decodes must encode again and decode
/// to an equal value. Nothing may panic on the way.
pub fn round_trip<M, T>(data: &[u8], wrap: fn(T) -> M, unwrap: fn(M) -> T)
where
    M: Encode + Decode,
    T: Clone + PartialEq + Debug,
{
    let Ok(message) = M::decode(BytesMut::from(data)) else {
        return;
    };
    let value = unwrap(message);
    // JSON refuses NaN and infinity, but nothing decoded from JSON holds
    // one, and the binary formats carry them: an encode error is a bug.
    let bytes = wrap(value.clone())
        .encode()
        .unwrap_or_else(|e| panic!("decoded {value:?} but cannot encode it again: {e}"));
    let again = unwrap(M::decode(BytesMut::from(&bytes[..])).expect("re-encoded bytes decode"));
    // NaN is not equal to itself: then compare what Debug prints.
    if again != value {
        assert_eq!(format!("{again:?}"), format!("{value:?}"));
    }
}

/// How a stream of frames ends.
#[derive(Debug, PartialEq)]
pub enum End {
    /// EOF between frames.
    Clean,
    /// A header declared more than the limit (`FrameTooLarge`, or
    /// `NotFrames` when it looks like another protocol).
    TooLarge { declared: u64, limit: usize },
    /// EOF inside a frame.
    Eof { expected: u64, received: u64 },
}

impl End {
    /// The end a decoder reported: `None` for a clean close, else its error,
    /// which must be one of the two a stream of frames can end with.
    pub fn of(error: Option<Error>) -> End {
        match error {
            None => End::Clean,
            Some(Error::FrameTooLarge { declared, limit }) => End::TooLarge { declared, limit },
            // A header over the limit that reads as another protocol.
            Some(Error::NotFrames {
                header,
                declared,
                limit,
                ..
            }) => {
                assert_eq!(u64::from(u32::from_be_bytes(header)), declared);
                End::TooLarge { declared, limit }
            }
            Some(Error::UnexpectedEof { expected, received }) => End::Eof { expected, received },
            Some(other) => panic!("a stream of frames cannot end with {other:?}"),
        }
    }
}

/// The reference parser of the wire format, written from the spec: the
/// frames in `stream` and how it ends, for a `max` payload length.
pub fn reference_frames(stream: &[u8], max: usize) -> (Vec<&[u8]>, End) {
    reference_frames_streamed(stream, max, max)
}

/// [`reference_frames`] for a reader that takes frames up to `accept`
/// bytes (streaming those over `max`) and reports a longer header against
/// `max`, the frame limit.
pub fn reference_frames_streamed(
    mut stream: &[u8],
    max: usize,
    accept: usize,
) -> (Vec<&[u8]>, End) {
    let accept = accept.max(max);
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, End::Clean);
        }
        let received = stream.len() as u64;
        let Some(header) = stream.get(..HEADER_LEN) else {
            let expected = HEADER_LEN as u64;
            return (frames, End::Eof { expected, received });
        };
        let declared = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
        if declared > accept {
            let declared = declared as u64;
            return (
                frames,
                End::TooLarge {
                    declared,
                    limit: max,
                },
            );
        }
        let Some(frame) = stream.get(HEADER_LEN..HEADER_LEN + declared) else {
            let expected = (HEADER_LEN + declared) as u64;
            return (frames, End::Eof { expected, received });
        };
        frames.push(frame);
        stream = &stream[HEADER_LEN + declared..];
    }
}

/// Reads the fuzz input as a script, one byte at a time.
#[derive(Debug)]
pub struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Script { data }
    }

    /// The next byte, or `None` at the end.
    pub fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// An in-memory connection whose reads the fuzz input chooses.
///
/// Each read step takes one control byte: below `0xe0` it hands over the
/// next `1..=64` bytes of the script (fewer at its end), so frames arrive
/// split anywhere; `0xe0..=0xef` hands over up to 4 KiB to 64 KiB of a fill
/// byte (the next script byte), so a short input can carry frames past
/// `LARGE_FRAME`; `0xf0..` answers `Pending` once (after waking the task,
/// as a socket would when data comes later). At the end of the script reads
/// return EOF. Everything handed over is kept in `delivered`. Writes accept at most `write_step` bytes per call and answer
/// `Pending` once in `pending_every + 1` calls (never for 0), so partial and interrupted
/// writes are exercised; everything written is kept for the target to
/// check.
#[derive(Debug)]
pub struct FuzzIo<'a> {
    script: Script<'a>,
    pub delivered: Vec<u8>,
    pub written: Vec<u8>,
    pub shut_down: bool,
    write_step: usize,
    pending_every: u32,
    write_calls: u32,
    /// Whether writes take several slices at once (as sockets do) or only
    /// `poll_write` (as many wrappers do).
    pub vectored: bool,
    /// Counts every I/O call that did something (took a script byte, wrote
    /// bytes, or was one of the scripted `Pending`s), for [`block_on`].
    pub progress: Rc<Cell<u64>>,
}

impl<'a> FuzzIo<'a> {
    pub fn new(script: Script<'a>, write_step: usize, pending_every: u32) -> Self {
        FuzzIo {
            script,
            delivered: Vec::new(),
            written: Vec::new(),
            shut_down: false,
            write_step: write_step.max(1),
            pending_every,
            write_calls: 0,
            vectored: false,
            progress: Rc::default(),
        }
    }

    fn write_pending(&mut self, cx: &mut Context<'_>) -> bool {
        self.write_calls += 1;
        self.progress.set(self.progress.get() + 1);
        // 0: never; n: one call in n + 1 (a write that never progresses
        // would be a dead peer, not something to survive).
        if self.pending_every > 0 && self.write_calls.is_multiple_of(self.pending_every + 1) {
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }
}

impl AsyncRead for FuzzIo<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(control) = this.script.byte() else {
            return Poll::Ready(Ok(())); // EOF
        };
        this.progress.set(this.progress.get() + 1);
        let start = buf.filled().len();
        match control {
            0xf0.. => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            0xe0.. => {
                let fill = this.script.byte().unwrap_or(0);
                let want = (usize::from(control - 0xe0) + 1) * 4096;
                let n = want.min(buf.remaining());
                buf.put_slice(&vec![fill; n]);
            }
            _ => {
                let want = (usize::from(control) % 64 + 1).min(buf.remaining());
                buf.put_slice(this.script.take(want));
            }
        }
        this.delivered.extend_from_slice(&buf.filled()[start..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FuzzIo<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        assert!(!this.shut_down, "write after shutdown");
        if this.write_pending(cx) {
            return Poll::Pending;
        }
        let n = buf.len().min(this.write_step);
        this.written.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        assert!(!this.shut_down, "write after shutdown");
        if this.write_pending(cx) {
            return Poll::Pending;
        }
        let mut room = this.write_step;
        for buf in bufs {
            let n = buf.len().min(room);
            this.written.extend_from_slice(&buf[..n]);
            room -= n;
        }
        Poll::Ready(Ok(this.write_step - room))
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().shut_down = true;
        Poll::Ready(Ok(()))
    }
}

/// Polls `f` with a waker that does nothing until it is ready. Every
/// `Pending` of [`FuzzIo`] wakes at once and counts in `progress`, so `stall`
/// polls in a row with no I/O progress mean the caller is spinning or stuck,
/// which is a bug.
pub fn block_on<T>(
    stall: usize,
    progress: &Cell<u64>,
    mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> T {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let (mut seen, mut idle) = (progress.get(), 0);
    loop {
        if let Poll::Ready(out) = f(&mut cx) {
            return out;
        }
        if progress.get() == seen {
            idle += 1;
            assert!(idle < stall, "{stall} polls in a row without any I/O");
        } else {
            (seen, idle) = (progress.get(), 0);
        }
    }
}
