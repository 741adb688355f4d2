//! Large frames' buffers, given back for the next large frame.
//!
//! A frame of [`LARGE_FRAME`] bytes or more arrives into
//! a buffer of its own, which leaves the connection with the frame. A
//! program that receives many of them (a file receiver: one 1 MiB chunk per
//! frame) allocates and frees a large buffer per frame, and glibc's malloc
//! hands freed blocks of that size back to the kernel at once: the next
//! frame page-faults the same memory in again and has it zeroed. On
//! loopback that cost more than the copy of the bytes themselves (87,000+
//! minor faults per GiB received; BENCHMARKS.md, "File transfer").
//!
//! [`give_back`] returns a frame (or what is left of it, such as a chunk's
//! body after its header) once the program is done with it; the next large
//! frame on any connection of the process is read into it. Only a buffer no
//! one else holds can come back, and the pool is bounded in bytes
//! ([`set_limit`], [`DEFAULT_LIMIT`] by default): beyond it a buffer is
//! freed as before. Giving back is optional; a program that never does pays
//! exactly what it paid before.
//!
//! ```
//! use bytes::Bytes;
//! use enchufe::framing::recycle;
//!
//! let frame = Bytes::from(vec![7u8; 256 * 1024]);
//! // ... write it to a file, hash it ...
//! assert!(recycle::give_back(frame)); // kept for the next large frame
//! ```

use std::sync::{Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

use crate::wire::limits::LARGE_FRAME;

/// How many bytes of buffers the pool keeps at most, by default: 16 MiB,
/// sixteen of a file transfer's 1 MiB chunks (twice its default window).
pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

/// A buffer is handed out for a frame of `len` bytes only if its capacity is
/// at most this many times `len`: a 4 MiB buffer is not spent on a 64 KiB
/// frame while the 4 MiB frames that would use it allocate.
const FIT: usize = 4;

struct Pool {
    buffers: Vec<BytesMut>,
    bytes: usize,
    limit: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    buffers: Vec::new(),
    bytes: 0,
    limit: DEFAULT_LIMIT,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // Nothing can panic while the lock is held; a poisoned pool is still a
    // list of empty buffers.
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives a large frame's buffer back for the next large frame. `true` if it
/// was kept: it was the only handle to its buffer (every clone and slice of
/// it dropped), the buffer holds at least [`LARGE_FRAME`] bytes, and the
/// pool had room under its limit. Otherwise the buffer is dropped here.
pub fn give_back(frame: Bytes) -> bool {
    let Ok(mut buf) = frame.try_into_mut() else {
        return false;
    };
    buf.clear();
    // The whole allocation, from its start: a chunk's body is a slice past
    // the frame's headers, and the next frame needs the bytes before it too.
    // Asking for one byte more than the view holds moves the (empty) view
    // back to the start when it does not start there, and fails harmlessly
    // when it does.
    let _ = buf.try_reclaim(buf.capacity() + 1);
    if buf.capacity() < LARGE_FRAME {
        return false;
    }
    let cap = buf.capacity();
    let mut pool = pool();
    if pool.bytes + cap > pool.limit {
        return false;
    }
    pool.bytes += cap;
    pool.buffers.push(buf);
    true
}

/// A kept buffer for a frame of `len` bytes: capacity at least `len`, and
/// not many times more.
pub(crate) fn take(len: usize) -> Option<BytesMut> {
    let mut pool = pool();
    if pool.buffers.is_empty() {
        return None;
    }
    let max = len.saturating_mul(FIT);
    let i = pool
        .buffers
        .iter()
        .rposition(|b| (len..=max).contains(&b.capacity()))?;
    let buf = pool.buffers.swap_remove(i);
    pool.bytes -= buf.capacity();
    Some(buf)
}

/// Sets how many bytes of buffers the pool keeps at most (0: none, and
/// every kept buffer is freed now). Process-wide.
pub fn set_limit(bytes: usize) {
    let mut pool = pool();
    pool.limit = bytes;
    while pool.bytes > bytes {
        let Some(buf) = pool.buffers.pop() else { break };
        pool.bytes -= buf.capacity();
    }
}

/// How many bytes of buffers the pool holds now.
pub fn held() -> usize {
    pool().bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the pool is process-wide, and the tests of a crate share
    // the process.
    #[test]
    fn keeps_unique_large_buffers_within_its_limit_and_hands_them_out_by_size() {
        set_limit(0);
        set_limit(3 * 1024 * 1024);

        // Too small, or shared: not kept.
        assert!(!give_back(Bytes::from(vec![0u8; 1024])));
        let shared = Bytes::from(vec![0u8; 1024 * 1024]);
        let other = shared.clone();
        assert!(!give_back(shared));
        drop(other);

        // A slice past a header gives back the whole buffer.
        let mut frame = BytesMut::with_capacity(1024 * 1024);
        frame.resize(1024 * 1024, 1);
        let body = frame.split_off(9).freeze();
        drop(frame);
        assert!(give_back(body));
        assert!(held() >= 1024 * 1024);

        // Up to the limit, then refused.
        assert!(give_back(Bytes::from(vec![0u8; 1024 * 1024])));
        assert!(!give_back(Bytes::from(vec![0u8; 2 * 1024 * 1024])));

        // Handed out only for frames it fits, and not many times too big.
        assert!(take(2 * 1024 * 1024).is_none());
        assert!(take(64 * 1024).is_none());
        let buf = take(1000 * 1024).expect("a kept buffer fits");
        assert!(buf.capacity() >= 1000 * 1024 && buf.is_empty());
        assert!(held() < 2 * 1024 * 1024);

        set_limit(0);
        assert_eq!(held(), 0);
        set_limit(DEFAULT_LIMIT);
    }
}
