//! Recovery: a room's recent messages kept on the bus, and where a member
//! stands in them.
//!
//! Every room message carries a [`Stamp`]: the server that sent it and a
//! sequence number that server counts up, with the number of its previous
//! message to the same room (`prev`). A member's [`Cursor`] is the last
//! stamp it saw from each server. Messages from one server reach everyone
//! in the order sent, so "everything from server N up to seq S" is a
//! member's whole position: recovery replays, from the room's history, each
//! server's messages after the cursor, in the history's order (each
//! server's in its own order), and never one the member saw. The `prev`
//! links make a missing message visible: if the first message replayed
//! from a server does not point back at the member's last one from it, the
//! messages between were trimmed from the history (or never reached it),
//! and the member is told ([`Recovery::Incomplete`]).
//!
//! ```text
//! history of room "sala" (oldest first; a bus log bounded by History)
//!   A#7 (prev 5)   B#3 (prev 0)   A#9 (prev 7)   B#4 (prev 3)
//! a member's cursor { A: 7, B: 0 }  -> replays B#3, A#9, B#4: complete
//! a member's cursor { A: 2 }         -> A#7 points back at 5, not 2: incomplete
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::NodeId;

/// How much of each room's recent messages the bus keeps, for members that
/// reconnect ([`Cluster::recover`](crate::Cluster::recover)): at least the
/// last `max_messages`, none older than `max_age`.
///
/// Memory on the bus is at most about `max_messages` ×
/// [`Config::max_message_bytes`](crate::Config::max_message_bytes) per
/// room (Redis trims with `MAXLEN ~`, so a few dozen more may stay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    /// Messages kept per room. Default 1,000: a busy chat room's last few
    /// minutes, about 1 MB per room for lines of 1 KB.
    pub max_messages: usize,
    /// How long a message is kept. Default 2 minutes: a phone that lost its
    /// network, or a server restarted behind a load balancer, is back well
    /// within it; longer asks members to trust stale order.
    pub max_age: Duration,
    /// The most bytes of one room's history read at once (a member's
    /// recovery, a server's catch-up): older entries past it count as not
    /// kept (the recovery is reported incomplete). Default 4 MiB, the
    /// default incoming queue's size: the 1,000 messages of a chat fit many
    /// times over, and a room of large messages cannot make one read take
    /// a gigabyte.
    pub max_read_bytes: usize,
}

impl Default for History {
    fn default() -> History {
        History {
            max_messages: 1_000,
            max_age: Duration::from_secs(120),
            max_read_bytes: 4 << 20,
        }
    }
}

impl History {
    /// Keeps `max_messages` for `max_age` (and reads up to the default
    /// `max_read_bytes`).
    pub fn new(max_messages: usize, max_age: Duration) -> History {
        History {
            max_messages,
            max_age,
            ..History::default()
        }
    }
}

/// Where one room message stands: the server that sent it and its number
/// there. Shown and parsed as `NODE-SEQ` (32 hex digits, a dash, decimal),
/// for an application that puts it in its own messages
/// ([`Cluster::to_room_with`](crate::Cluster::to_room_with)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stamp {
    /// The server that sent it.
    pub node: NodeId,
    /// Its number among that server's messages (from 1, growing).
    pub seq: u64,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node, self.seq)
    }
}

/// A [`Stamp`] or [`Cursor`] that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stamp or cursor: expected NODE-SEQ[,NODE-SEQ...] (32 hex digits, '-', a number)")]
#[non_exhaustive]
pub struct ParseError;

impl FromStr for Stamp {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Stamp, ParseError> {
        let (node, seq) = s.split_once('-').ok_or(ParseError)?;
        if node.len() != 32 {
            return Err(ParseError);
        }
        Ok(Stamp {
            node: NodeId(u128::from_str_radix(node, 16).map_err(|_| ParseError)?),
            seq: seq.parse().map_err(|_| ParseError)?,
        })
    }
}

/// What a member has seen of a room: the last [`Stamp`] from each server.
/// The member keeps it ([`Cursor::saw`] for each message) and hands it back
/// when it reconnects ([`Cluster::recover`](crate::Cluster::recover)).
/// Shown and parsed as stamps joined by commas (empty: nothing seen).
///
/// At most [`Cursor::MAX_NODES`] servers: a cursor is untrusted input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    last: BTreeMap<NodeId, u64>,
}

impl Cursor {
    /// The most servers a cursor names (a parsed one with more is refused;
    /// [`Cursor::saw`] forgets the lowest node id past it, which can only
    /// replay more, never fewer).
    pub const MAX_NODES: usize = 64;

    /// Nothing seen.
    pub fn new() -> Cursor {
        Cursor::default()
    }

    /// The member saw the message stamped `stamp`.
    pub fn saw(&mut self, stamp: Stamp) {
        let last = self.last.entry(stamp.node).or_insert(0);
        *last = (*last).max(stamp.seq);
        if self.last.len() > Cursor::MAX_NODES {
            self.last.pop_first();
        }
    }

    /// The last seq seen from `node`, if any.
    pub fn last(&self, node: NodeId) -> Option<u64> {
        self.last.get(&node).copied()
    }

    /// The stamps, one per server.
    pub fn stamps(&self) -> impl Iterator<Item = Stamp> + '_ {
        self.last.iter().map(|(&node, &seq)| Stamp { node, seq })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, stamp) in self.stamps().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{stamp}")?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Cursor, ParseError> {
        let mut cursor = Cursor::new();
        if s.is_empty() {
            return Ok(cursor);
        }
        for part in s.split(',') {
            if cursor.last.len() == Cursor::MAX_NODES {
                return Err(ParseError);
            }
            cursor.saw(part.parse()?);
        }
        Ok(cursor)
    }
}

/// What [`Cluster::recover`](crate::Cluster::recover) did: the missed
/// messages it queued to the member, and whether that was all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "an incomplete recovery is worth telling the member"]
pub enum Recovery {
    /// Every message the member missed was in the history and is replayed.
    Complete {
        /// Messages replayed.
        replayed: usize,
    },
    /// Some messages the member missed were past the window (or never
    /// reached the history): those still in it are replayed, in order, and
    /// the member should be told it missed some.
    Incomplete {
        /// Messages replayed.
        replayed: usize,
    },
}

impl Recovery {
    /// Messages replayed.
    pub fn replayed(&self) -> usize {
        match *self {
            Recovery::Complete { replayed } | Recovery::Incomplete { replayed } => replayed,
        }
    }

    /// Some messages were missed for good.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Recovery::Incomplete { .. })
    }
}

/// `prev` of a message whose server no longer knows its previous one in the
/// room (it forgot its positions, see `Positions`): recovery across it is
/// reported incomplete.
pub(crate) const UNKNOWN_PREV: u64 = u64::MAX;

/// The entries of a room's history to replay to a member at `cursor`, and
/// whether some are missing. `entries` are `(stamp, prev, frame)` oldest
/// first.
pub(crate) fn plan<T>(
    cursor: &Cursor,
    entries: impl IntoIterator<Item = (Stamp, u64, T)>,
) -> (Vec<(Stamp, T)>, bool) {
    let mut last: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut missed = false;
    let mut replay = Vec::new();
    for (stamp, prev, frame) in entries {
        let seen = last
            .get(&stamp.node)
            .copied()
            .or_else(|| cursor.last(stamp.node));
        if seen.is_some_and(|seen| stamp.seq <= seen) {
            continue;
        }
        // The first new one from this server must follow the last seen (0:
        // nothing seen, and it is that server's first in the room).
        if prev != seen.unwrap_or(0) {
            missed = true;
        }
        last.insert(stamp.node, stamp.seq);
        replay.push((stamp, frame));
    }
    (replay, missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(node: u128, seq: u64) -> Stamp {
        Stamp {
            node: NodeId(node),
            seq,
        }
    }

    #[test]
    fn cursors_and_stamps_round_trip_and_refuse_junk() {
        let mut cursor = Cursor::new();
        cursor.saw(s(1, 7));
        cursor.saw(s(1, 3));
        cursor.saw(s(0xab, 2));
        let text = cursor.to_string();
        assert_eq!(text.parse::<Cursor>().unwrap(), cursor);
        assert_eq!(cursor.last(NodeId(1)), Some(7));
        assert_eq!("".parse::<Cursor>().unwrap(), Cursor::new());
        for junk in ["x", "1-2", &format!("{}-x", NodeId(1)), ",", "a-1,"] {
            assert_eq!(junk.parse::<Cursor>(), Err(ParseError), "{junk}");
        }
        let many: Vec<String> = (0..=Cursor::MAX_NODES as u128)
            .map(|n| s(n, 1).to_string())
            .collect();
        assert_eq!(many.join(",").parse::<Cursor>(), Err(ParseError));
    }

    #[test]
    fn plan_replays_after_the_cursor_and_sees_gaps() {
        let history = || {
            vec![
                (s(1, 7), 5, "a7"),
                (s(2, 3), 0, "b3"),
                (s(1, 9), 7, "a9"),
                (s(2, 4), 3, "b4"),
            ]
        };
        let mut cursor = Cursor::new();
        cursor.saw(s(1, 7));
        let (replay, missed) = plan(&cursor, history());
        let frames: Vec<_> = replay.iter().map(|(_, f)| *f).collect();
        assert_eq!(frames, ["b3", "a9", "b4"]);
        assert!(!missed);

        cursor.saw(s(2, 4));
        cursor.saw(s(1, 9));
        assert_eq!(plan(&cursor, history()), (vec![], false), "nothing twice");

        let mut behind = Cursor::new();
        behind.saw(s(1, 2));
        let (replay, missed) = plan(&behind, history());
        assert_eq!(replay.len(), 4);
        assert!(missed, "a#7 points back at 5: 3..5 were trimmed");

        let unknown = vec![(s(1, 8), UNKNOWN_PREV, "a8")];
        assert!(plan(&Cursor::new(), unknown).1);
    }
}
