//! Where each room stands: this server's message numbers, and the last one
//! heard from each server per room.

use std::collections::HashMap;

use super::node::NodeId;

/// The most (room, server) positions a cluster remembers; past it, it
/// forgets them all (see `Positions::forgot`). 65,536 entries of about
/// 64 B: 4 MiB at worst.
pub(super) const MAX_POSITIONS: usize = 65_536;

#[derive(Debug, Default)]
pub(super) struct Positions {
    /// This server's last message number (every room message gets the next).
    pub(super) seq: u64,
    /// Room -> server -> the number of its last message to that room.
    pub(super) rooms: HashMap<String, HashMap<NodeId, u64>>,
    pub(super) entries: usize,
    /// Positions were forgotten once (too many rooms): a message to a room
    /// whose previous one is forgotten says so (`UNKNOWN_PREV`), and a
    /// recovery across it is reported incomplete rather than guessed.
    pub(super) forgot: bool,
    /// Room messages with history queued for the bus (or dropped).
    pub(super) logged: u64,
}

impl Positions {
    /// Records `node`'s message `seq` in `room`; its previous one there.
    pub(super) fn record(&mut self, room: &str, node: NodeId, seq: u64) -> Option<u64> {
        let known = self.rooms.get(room).is_some_and(|r| r.contains_key(&node));
        if !known && self.entries >= MAX_POSITIONS {
            self.rooms.clear();
            self.entries = 0;
            self.forgot = true;
        }
        let nodes = self.rooms.entry(room.to_owned()).or_default();
        let old = nodes.insert(node, seq);
        if old.is_none() {
            self.entries += 1;
        }
        old
    }
}
