//! A member's recovery ([`Cluster::recover`]) and a server's catch-up after
//! its subscription was lost, both from the rooms' histories on the bus.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use enchufe_server::{Connection, ConnectionId};

use super::handle::Cluster;
use super::node::NodeId;
use super::pending::{Hold, Pending};
use super::shared::{lock, Inner};
use crate::envelope::{Envelope, Kind};
use crate::history::plan;
use crate::{Cursor, Error, Recovery, Result, Stamp};

/// Removes a recovery's entry however `recover` ends, unless it finished
/// ([`Recovering::finish`] leaves what to skip).
struct Recovering<'a> {
    inner: &'a Inner,
    key: (ConnectionId, String),
}

impl Recovering<'_> {
    /// Takes the held messages, if the recovery still holds them; later
    /// ones go to the connection directly. Call with the `recovering` lock
    /// held (`map`).
    fn take(&self, map: &mut HashMap<(ConnectionId, String), Hold>) -> Option<Pending> {
        if !matches!(map.get(&self.key), Some(Hold::Replaying(_))) {
            return None;
        }
        self.inner.recovering_count.fetch_sub(1, Ordering::Relaxed);
        match map.remove(&self.key) {
            Some(Hold::Replaying(pending)) => Some(pending),
            _ => None,
        }
    }

    /// Ends the recovery of `to`, a member that has everything up to
    /// `seen` (its cursor and the replay): queues the live messages held
    /// meanwhile that come after `seen`, then, for each server this one
    /// has not yet heard up to `seen` (the history read was ahead of the
    /// subscription), skips the live messages at or before it. Returns
    /// whether some were missed (a gap, or held ones that did not fit).
    fn finish(&self, to: Option<&Connection>, mut seen: Cursor) -> bool {
        let inner = self.inner;
        let (conn, room) = (&self.key.0, self.key.1.as_str());
        // The lock order of `deliver`. With the positions held, no live
        // message is recorded but not yet delivered: each one this server
        // heard is in `pending`, or went to the connection before the
        // recovery, or is still to come and past what was heard.
        let positions = lock(&inner.positions);
        let mut map = lock(&inner.recovering);
        let Some(pending) = self.take(&mut map) else {
            return false;
        };
        let Some(to) = to else {
            return false;
        };
        let (live, gap) = plan(&seen, pending.items);
        let mut missed = gap || pending.overflow;
        for (stamp, frame) in live {
            if to.try_push(frame).is_err() {
                missed = true;
            }
            seen.saw(stamp);
        }
        let heard = positions.rooms.get(room);
        let ahead: BTreeMap<NodeId, u64> = seen
            .stamps()
            .filter(|stamp| {
                let last = heard.and_then(|nodes| nodes.get(&stamp.node));
                last.is_none_or(|&last| last < stamp.seq)
            })
            .map(|stamp| (stamp.node, stamp.seq))
            .collect();
        // Only for a member still in the room: leaving it, or closing
        // (found by `Inner::local_members`), removes the entry.
        let member = lock(&inner.rooms)
            .get(room)
            .is_some_and(|members| members.contains(conn));
        if !ahead.is_empty() && member {
            map.insert(self.key.clone(), Hold::Skipping(ahead));
            inner.recovering_count.fetch_add(1, Ordering::Relaxed);
        }
        missed
    }
}

impl Drop for Recovering<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.inner.recovering);
        self.take(&mut map);
    }
}

impl Cluster {
    /// Where a member that joins `room` now stands: the last message heard
    /// here from each server in it. Give it to the member with its first
    /// messages; each message it then receives moves it on
    /// ([`Cursor::saw`]). As fresh as what this server has heard (a
    /// message still on its way counts as not seen, so it would be
    /// replayed, not lost).
    pub fn cursor(&self, room: &str) -> Cursor {
        let positions = lock(&self.inner.positions);
        let last: BTreeMap<NodeId, u64> = positions
            .rooms
            .get(room)
            .map(|nodes| nodes.iter().map(|(&node, &seq)| (node, seq)).collect())
            .unwrap_or_default();
        let mut cursor = Cursor::new();
        // The newest servers first would be nicer; any bounded choice is
        // safe (a server left out is replayed in full, or reported).
        for (node, seq) in last.into_iter().take(Cursor::MAX_NODES) {
            cursor.saw(Stamp { node, seq });
        }
        cursor
    }

    /// Puts this server's connection `conn` (back) in `room` and queues to
    /// it, in order, the room's messages after `cursor` that are still in
    /// the history ([`Config::history`](crate::Config::history)); live messages that arrive
    /// meanwhile follow them, and none comes twice: a live message at or
    /// before the member's cursor or the replay (per server) is not
    /// delivered to it, however late it reaches this server (a history
    /// read can be ahead of this server's subscription). A member that was
    /// away longer than the history keeps is told so:
    /// [`Recovery::Incomplete`] (what is still kept is replayed all the
    /// same).
    ///
    /// The replay waits for room in the connection's queue
    /// ([`Connection::push`](enchufe_server::Connection::push)); live
    /// messages held meanwhile are bounded by
    /// [`Config::max_incoming_bytes`](crate::Config::max_incoming_bytes) (past it, the recovery is incomplete).
    ///
    /// # Errors
    /// [`Error::NoHistory`] without [`Config::history`](crate::Config::history) (or on a bus that
    /// keeps none); [`Error::Unavailable`]/[`Error::Timeout`] if the bus
    /// could not give the history (the connection is in the room all the
    /// same, and gets live messages); [`Error::Closed`] if the connection
    /// or the cluster closed; [`Error::TooLarge`] for a room name over
    /// [`Config::max_room_name`](crate::Config::max_room_name); [`Error::Recovering`] while another
    /// recovery of the same connection and room runs.
    pub async fn recover(
        &self,
        room: &str,
        conn: ConnectionId,
        cursor: &Cursor,
    ) -> Result<Recovery> {
        let inner = &*self.inner;
        let keep = inner.config.history.ok_or(Error::NoHistory)?;
        self.check_room(room)?;
        if inner.closing.is_cancelled() {
            return Err(Error::Closed);
        }
        let key = (conn, room.to_owned());
        {
            let mut map = lock(&inner.recovering);
            match map.insert(key.clone(), Hold::Replaying(Pending::default())) {
                Some(Hold::Replaying(running)) => {
                    map.insert(key, Hold::Replaying(running));
                    return Err(Error::Recovering);
                }
                // What an earlier recovery skips is in the member's
                // cursor now (or the member asks for it again).
                Some(Hold::Skipping(_)) => {}
                None => {
                    inner.recovering_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let guard = Recovering { inner, key };
        self.join(room, conn)?;
        // This server's messages stamped so far must be in the history
        // before it is read: those sent before the join went to nobody
        // here, and must come from it.
        let logged = lock(&inner.positions).logged;
        let mut missed = !matches!(
            tokio::time::timeout(
                inner.config.detach_timeout,
                inner.settled.subscribe().wait_for(|n| *n >= logged),
            )
            .await,
            Ok(Ok(_))
        );
        let history = match inner.bus.history(&inner.log(room), keep).await {
            Ok(history) => history,
            Err(e) => {
                // What arrived meanwhile is not lost for the error.
                let _ = guard.finish(inner.handle.connection(conn).as_ref(), cursor.clone());
                return Err(e);
            }
        };
        let entries = history.into_iter().filter_map(|entry| {
            let envelope = Envelope::decode(entry)?;
            match envelope.kind {
                Kind::Room {
                    room: name,
                    seq,
                    prev,
                } if name == room => Some((
                    Stamp {
                        node: envelope.node,
                        seq,
                    },
                    prev,
                    envelope.payload,
                )),
                _ => None,
            }
        });
        let (replay, gap) = plan(cursor, entries);
        missed |= gap;
        let to = inner.handle.connection(conn).ok_or(Error::Closed)?;
        let mut seen = cursor.clone();
        let mut replayed = 0;
        for (stamp, frame) in replay {
            if to.push(frame).await.is_err() {
                if inner.handle.connection(conn).is_none() {
                    return Err(Error::Closed);
                }
                // Dropped by the slow-consumer policy: missed after all.
                missed = true;
            } else {
                replayed += 1;
            }
            seen.saw(stamp);
        }
        // The live messages held meanwhile, after the replay, minus those
        // it already had; under the lock, so the next live one waits.
        missed |= guard.finish(Some(&to), seen);
        Ok(match missed {
            true => Recovery::Incomplete { replayed },
            false => Recovery::Complete { replayed },
        })
    }
}

impl Inner {
    /// Delivers to this server's rooms the messages from other servers
    /// that are in the histories and were not heard here (the
    /// subscription was down). A server not heard from in a room before is
    /// caught up only from its first message there (`prev` 0): older ones
    /// may predate this server's members. Messages trimmed meanwhile are
    /// lost, and counted ([`Stats::missed`](crate::Stats::missed)).
    pub(super) async fn catch_up(&self) {
        let Some(keep) = self.config.history else {
            return;
        };
        let rooms: Vec<String> = lock(&self.rooms).keys().cloned().collect();
        for room in rooms {
            let history = match self.bus.history(&self.log(&room), keep).await {
                Ok(history) => history,
                Err(e) => {
                    tracing::warn!(room, error = %e, "cannot catch up a room after a bus outage");
                    self.missed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            for entry in history {
                let Some(envelope) = Envelope::decode(entry) else {
                    continue;
                };
                let Kind::Room {
                    room: name,
                    seq,
                    prev,
                } = &envelope.kind
                else {
                    continue;
                };
                if *name != room || envelope.node == self.node {
                    continue;
                }
                {
                    let mut positions = lock(&self.positions);
                    let last = positions
                        .rooms
                        .get(&room)
                        .and_then(|nodes| nodes.get(&envelope.node))
                        .copied();
                    match last {
                        Some(last) if *seq <= last => continue,
                        Some(last) if *prev != last => {
                            self.missed.fetch_add(1, Ordering::Relaxed);
                        }
                        None if *prev != 0 => continue,
                        _ => {}
                    }
                    positions.record(&room, envelope.node, *seq);
                    self.caught_up.fetch_add(1, Ordering::Relaxed);
                    // Still under the lock (see `deliver`).
                    self.deliver(&envelope.kind, envelope.node, None, envelope.payload);
                }
            }
        }
    }
}
