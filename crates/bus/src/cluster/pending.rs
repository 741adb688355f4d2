//! What live room messages to one connection do around its recovery: wait
//! for the replay, then skip what the member already has.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::node::NodeId;
use crate::Stamp;

/// Live room messages to a connection around its recovery.
#[derive(Debug)]
pub(super) enum Hold {
    /// The replay is being queued: live messages wait, to follow it.
    Replaying(Pending),
    /// The replay is queued, but this server has not heard, live, every
    /// message the member has (from the replay or before it): a history
    /// read can be ahead of the subscription, by a message published
    /// between the two or still on its way. Per server, the member's last
    /// seq: a live message at or before it is skipped, and the first that
    /// reaches it ends the skipping for that server (what comes live from
    /// a server comes in order, `Inner::on_message`).
    Skipping(BTreeMap<NodeId, u64>),
}

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

/// Whether a live message stamped `stamp` is one the member has, for a
/// connection skipping after its recovery (`ahead`); forgets the server's
/// entry once the live messages reach it. `true`: skip it.
pub(super) fn skip(ahead: &mut BTreeMap<NodeId, u64>, stamp: Stamp) -> bool {
    let Some(&last) = ahead.get(&stamp.node) else {
        return false;
    };
    if stamp.seq >= last {
        // Later live ones from this server are past it.
        ahead.remove(&stamp.node);
    }
    stamp.seq <= last
}
