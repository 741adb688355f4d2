//! The sizes a [`Wire`](super::state::Wire) reads, grows and writes by.

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
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// First capacity of a large frame's own buffer, before it doubles with the
/// bytes that arrive.
pub(super) const LARGE_START: usize = 16 * 1024;

/// Most slices handed to one vectored write (Linux accepts 1024; 64 covers a
/// batch of large bodies with their headers and keeps the array on the stack).
pub(super) const MAX_IOVECS: usize = 64;

/// The first capacity of the write buffer: a batch of small replies fits
/// without regrowing.
pub(super) const WRITE_START: usize = 4 * 1024;
