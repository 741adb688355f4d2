//! What a cluster publishes on the bus: who sent it, to whom, the bytes.
//!
//! ```text
//! +---------+------+-------------+-----------------------------------+----------------+
//! | version | kind | node (16 B) | room: u16 BE len, name, seq u64,  | payload (rest) |
//! |  1 B    | 1 B  |             | prev u64 (kind Room only)         |                |
//! +---------+------+-------------+-----------------------------------+----------------+
//! kind 0 All: payload is the frame for every member
//! kind 1 Room: payload is the frame for the room's members; seq is the
//!        message's number among the node's, prev the number of the node's
//!        previous message to the room (0: none), see `history`
//! kind 2 Presence: payload is { u16 BE len, room name, u32 BE count,
//!        count x u64 BE connection id }*, the node's rooms now
//! kind 3 Gone: the node detached; no payload
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::NodeId;

const VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    All,
    Room { room: String, seq: u64, prev: u64 },
    Presence,
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) node: NodeId,
    pub(crate) kind: Kind,
    pub(crate) payload: Bytes,
}

impl Envelope {
    pub(crate) fn encode(&self) -> Bytes {
        let room = match &self.kind {
            Kind::Room { room, seq, prev } => Some((room.as_bytes(), *seq, *prev)),
            _ => None,
        };
        let mut out = BytesMut::with_capacity(
            18 + room.map_or(0, |(r, _, _)| 18 + r.len()) + self.payload.len(),
        );
        out.put_u8(VERSION);
        out.put_u8(match self.kind {
            Kind::All => 0,
            Kind::Room { .. } => 1,
            Kind::Presence => 2,
            Kind::Gone => 3,
        });
        out.put_u128(self.node.0);
        if let Some((room, seq, prev)) = room {
            // Room names are limited to `Config::max_room_name` (< 64 KiB)
            // before they get here.
            out.put_u16(room.len() as u16);
            out.put_slice(room);
            out.put_u64(seq);
            out.put_u64(prev);
        }
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// `None` for anything malformed: the bus is shared, and a foreign or
    /// newer publisher's bytes are skipped, not trusted.
    pub(crate) fn decode(mut bytes: Bytes) -> Option<Envelope> {
        if bytes.len() < 18 || bytes.get_u8() != VERSION {
            return None;
        }
        let kind = bytes.get_u8();
        let node = NodeId(bytes.get_u128());
        let kind = match kind {
            0 => Kind::All,
            1 => {
                if bytes.len() < 2 {
                    return None;
                }
                let len = bytes.get_u16() as usize;
                if bytes.len() < len + 16 {
                    return None;
                }
                let name = bytes.split_to(len);
                Kind::Room {
                    room: String::from_utf8(name.to_vec()).ok()?,
                    seq: bytes.get_u64(),
                    prev: bytes.get_u64(),
                }
            }
            2 => Kind::Presence,
            3 => Kind::Gone,
            _ => return None,
        };
        Some(Envelope {
            node,
            kind,
            payload: bytes,
        })
    }
}

/// A node's rooms and their members, for a presence heartbeat.
pub(crate) fn encode_presence<'a>(
    rooms: impl Iterator<Item = (&'a str, Vec<u64>)>,
    limit: usize,
) -> Bytes {
    let mut out = BytesMut::new();
    for (room, members) in rooms {
        let size = 2 + room.len() + 4 + 8 * members.len();
        if out.len() + size > limit {
            // The heartbeat is bounded; rooms past the limit are left out
            // of presence (their messages are still delivered).
            tracing::warn!(room, "presence heartbeat over its limit; room left out");
            continue;
        }
        out.put_u16(room.len() as u16);
        out.put_slice(room.as_bytes());
        out.put_u32(members.len() as u32);
        for member in members {
            out.put_u64(member);
        }
    }
    out.freeze()
}

/// The rooms of a presence heartbeat; `None` if malformed.
pub(crate) fn decode_presence(mut bytes: Bytes) -> Option<Vec<(String, Vec<u64>)>> {
    let mut rooms = Vec::new();
    while bytes.has_remaining() {
        if bytes.len() < 2 {
            return None;
        }
        let len = bytes.get_u16() as usize;
        if bytes.len() < len + 4 {
            return None;
        }
        let room = String::from_utf8(bytes.split_to(len).to_vec()).ok()?;
        let count = bytes.get_u32() as usize;
        if bytes.len() < count.checked_mul(8)? {
            return None;
        }
        let members = (0..count).map(|_| bytes.get_u64()).collect();
        rooms.push((room, members));
    }
    Some(rooms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        let envelope = Envelope {
            node: NodeId(7),
            kind: Kind::Room {
                room: "sala".into(),
                seq: 9,
                prev: 4,
            },
            payload: Bytes::from_static(b"hola"),
        };
        let bytes = envelope.encode();
        assert_eq!(Envelope::decode(bytes.clone()), Some(envelope));
        for cut in 0..bytes.len() - 4 {
            assert_eq!(Envelope::decode(bytes.slice(..cut)), None, "cut at {cut}");
        }
        let presence = encode_presence([("a", vec![1, 2]), ("b", vec![3])].into_iter(), 1024);
        assert_eq!(
            decode_presence(presence.clone()),
            Some(vec![("a".into(), vec![1, 2]), ("b".into(), vec![3])])
        );
        assert_eq!(decode_presence(presence.slice(..presence.len() - 1)), None);
        assert!(encode_presence([("a", vec![1; 100])].into_iter(), 64).is_empty());
    }
}
