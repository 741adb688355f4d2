//! Live room messages held for a connection while it is recovered, to
//! follow its replay.

use bytes::Bytes;

use crate::Stamp;

/// Live room messages held for a connection while it is recovered.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) items: Vec<(Stamp, u64, Bytes)>,
    pub(super) bytes: usize,
    /// Some did not fit in `Config::max_incoming_bytes`.
    pub(super) overflow: bool,
}

impl Pending {
    /// Holds a live message for after the replay; `false` (and the
    /// recovery incomplete) past `limit` bytes held.
    pub(super) fn hold(&mut self, stamp: Stamp, prev: u64, frame: &Bytes, limit: usize) -> bool {
        if self.bytes + frame.len() > limit {
            self.overflow = true;
            return false;
        }
        self.bytes += frame.len();
        self.items.push((stamp, prev, frame.clone()));
        true
    }
}
