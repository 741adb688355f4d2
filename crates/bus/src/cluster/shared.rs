//! What the handle, its tasks and recovery share: the cluster's state
//! ([`Inner`]), and delivering, queueing and receiving messages on it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use enchufe_server::{ConnectionId, ServerHandle};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::Config;
use super::node::NodeId;
use super::pending::{skip, Hold};
use super::positions::Positions;
use crate::envelope::{decode_presence, encode_presence, Envelope, Kind};
use crate::queue::Feed;
use crate::{Bus, Result, Stamp};

/// A publication waiting for the bus.
pub(super) struct Outgoing {
    pub(super) envelope: Bytes,
    /// The room history it goes to (a room message with history on).
    pub(super) log: Option<String>,
    /// The caller awaiting the bus's answer, if any.
    pub(super) confirm: Option<oneshot::Sender<Result<usize>>>,
}

/// A server's rooms and the connection ids in each, as a heartbeat tells.
type Rooms = Vec<(String, Vec<u64>)>;

/// The state every clone of a [`Cluster`](super::Cluster) and its tasks share.
pub(super) struct Inner {
    pub(super) handle: ServerHandle,
    pub(super) bus: Arc<dyn Bus>,
    pub(super) config: Config,
    pub(super) node: NodeId,
    /// This server's rooms: the only copy; other servers learn them from
    /// heartbeats.
    pub(super) rooms: Mutex<HashMap<String, HashSet<ConnectionId>>>,
    /// Other servers' rooms from their last heartbeat, and when it came.
    pub(super) remote: Mutex<HashMap<NodeId, (Instant, Rooms)>>,
    pub(super) outgoing: Feed<Outgoing>,
    /// Where each room stands: this server's numbering, and the last
    /// message heard from each server per room.
    pub(super) positions: Mutex<Positions>,
    /// Connections being recovered, per room: live room messages wait here
    /// until the replay is queued, so they come after it; then those the
    /// member already has are skipped until the live ones catch up (see
    /// `Hold`), so none comes twice. An entry goes when its recovery fails,
    /// when the live messages catch up, or when the connection leaves the
    /// room or closes: at most one per member of a room, each naming at
    /// most `Cursor::MAX_NODES` servers.
    pub(super) recovering: Mutex<HashMap<(ConnectionId, String), Hold>>,
    /// `recovering.len()`, read without the lock on every room message.
    pub(super) recovering_count: AtomicUsize,
    /// Logged room messages that left the outgoing queue (published,
    /// failed or dropped), against `Positions::logged`: recovery waits for
    /// this server's own to reach the history.
    pub(super) settled: watch::Sender<u64>,
    pub(super) published: AtomicU64,
    pub(super) publish_failures: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) caught_up: AtomicU64,
    pub(super) missed: AtomicU64,
    pub(super) incoming_dropped: AtomicU64,
    /// Detaching: sends are refused, the publisher empties its queue.
    pub(super) closing: CancellationToken,
    /// Stop now, whatever is queued (detaching took too long).
    pub(super) cancel: CancellationToken,
    pub(super) tasks: TaskTracker,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// This server's live members of `room`; forgets those that closed.
    pub(super) fn local_members(&self, room: &str) -> Vec<ConnectionId> {
        let mut rooms = lock(&self.rooms);
        let Some(members) = rooms.get_mut(room) else {
            return Vec::new();
        };
        let mut closed = Vec::new();
        members.retain(|id| {
            let open = self.handle.connection(*id).is_some();
            if !open {
                closed.push(*id);
            }
            open
        });
        let live: Vec<ConnectionId> = members.iter().copied().collect();
        if live.is_empty() {
            rooms.remove(room);
        }
        drop(rooms);
        for conn in closed {
            self.stop_skipping(conn, room);
        }
        live
    }

    /// Forgets what `conn` skips in `room` after its recovery (it left the
    /// room or closed). A recovery still running keeps its entry, and
    /// removes it itself.
    pub(super) fn stop_skipping(&self, conn: ConnectionId, room: &str) {
        if self.recovering_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = lock(&self.recovering);
        let key = (conn, room.to_owned());
        if matches!(map.get(&key), Some(Hold::Skipping(_))) {
            map.remove(&key);
            self.recovering_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The bus key of `room`'s history.
    pub(super) fn log(&self, room: &str) -> String {
        format!("{}:history:{room}", self.config.channel)
    }

    /// Queues an envelope for the publisher. A logged one that does not
    /// fit is settled at once (it will never reach the history).
    pub(super) fn queue(
        &self,
        kind: Kind,
        frame: Bytes,
        log: Option<String>,
        confirm: Option<oneshot::Sender<Result<usize>>>,
    ) {
        let logged = log.is_some();
        let envelope = Envelope {
            node: self.node,
            kind,
            payload: frame,
        }
        .encode();
        let size = envelope.len();
        let item = Outgoing {
            envelope,
            log,
            confirm,
        };
        // A full queue is counted by the queue (`Stats::outgoing_dropped`);
        // a caller awaiting it sees its answer dropped (`Error::Full`).
        if !self.outgoing.offer(item, size) && logged {
            self.settled.send_modify(|n| *n += 1);
        }
    }

    /// Queues `frame` to this server's connections that `kind` names (a
    /// message from `node`). For a room message from another server, call
    /// it with the `positions` lock held since the message was recorded
    /// there: a recovery that ends (and reads the positions) then finds it
    /// either recorded and delivered, or neither.
    pub(super) fn deliver(
        &self,
        kind: &Kind,
        node: NodeId,
        except: Option<ConnectionId>,
        frame: Bytes,
    ) -> usize {
        match kind {
            // The server's own broadcast: encoded once, never waits, the
            // slow-consumer policy per connection.
            Kind::All => match except {
                Some(except) => self.handle.broadcast_except(except, frame),
                None => self.handle.broadcast(frame),
            }
            .unwrap_or(0),
            Kind::Room { room, seq, prev } => {
                let members = self.local_members(room);
                let mut held = (self.recovering_count.load(Ordering::Relaxed) > 0)
                    .then(|| lock(&self.recovering));
                let stamp = Stamp { node, seq: *seq };
                let mut delivered = 0;
                for id in members.into_iter().filter(|id| Some(*id) != except) {
                    if let Some(map) = held.as_mut() {
                        let key = (id, room.clone());
                        match map.get_mut(&key) {
                            Some(Hold::Replaying(pending)) => {
                                // Being recovered: after the replay.
                                let limit = self.config.max_incoming_bytes;
                                delivered += usize::from(pending.hold(stamp, *prev, &frame, limit));
                                continue;
                            }
                            Some(Hold::Skipping(ahead)) => {
                                let skipped = skip(ahead, stamp);
                                if ahead.is_empty() {
                                    map.remove(&key);
                                    self.recovering_count.fetch_sub(1, Ordering::Relaxed);
                                }
                                if skipped {
                                    // The member has it (replayed, or seen
                                    // before it came back).
                                    continue;
                                }
                            }
                            None => {}
                        }
                    }
                    let Some(conn) = self.handle.connection(id) else {
                        continue;
                    };
                    delivered += usize::from(conn.try_push(frame.clone()).is_ok());
                }
                delivered
            }
            Kind::Presence | Kind::Gone => 0,
        }
    }

    /// A message from the bus.
    pub(super) fn on_message(&self, payload: Bytes) {
        let Some(envelope) = Envelope::decode(payload) else {
            tracing::debug!("skipped a malformed message on the bus");
            return;
        };
        if envelope.node == self.node {
            // Already delivered locally when it was sent.
            return;
        }
        match envelope.kind {
            Kind::Presence => {
                if let Some(rooms) = decode_presence(envelope.payload) {
                    lock(&self.remote).insert(envelope.node, (Instant::now(), rooms));
                }
            }
            Kind::Gone => {
                lock(&self.remote).remove(&envelope.node);
            }
            kind => {
                self.received.fetch_add(1, Ordering::Relaxed);
                // Held while delivering (see `deliver`).
                let mut positions = None;
                if let Kind::Room { room, seq, .. } = &kind {
                    let positions = positions.insert(lock(&self.positions));
                    let last = positions.record(room, envelope.node, *seq);
                    if let Some(last) = last.filter(|&last| last >= *seq) {
                        // Delivered already (by a catch-up, or a bus that
                        // repeats itself): never twice, never backwards.
                        positions.record(room, envelope.node, last);
                        return;
                    }
                }
                self.deliver(&kind, envelope.node, None, envelope.payload);
                drop(positions);
            }
        }
    }

    pub(super) fn presence(&self) -> Bytes {
        let names: Vec<String> = lock(&self.rooms).keys().cloned().collect();
        let rooms: Vec<(String, Vec<u64>)> = names
            .into_iter()
            .map(|name| {
                let members = self.local_members(&name).iter().map(|id| id.0).collect();
                (name, members)
            })
            .collect();
        let payload = encode_presence(
            rooms
                .iter()
                .map(|(name, members)| (name.as_str(), members.clone())),
            self.config.max_presence_bytes,
        );
        Envelope {
            node: self.node,
            kind: Kind::Presence,
            payload,
        }
        .encode()
    }
}
