//! The [`Cluster`] handle: attaching, the sends, rooms and members, and
//! detaching.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use enchufe_framing::Encode;
use enchufe_server::{ConnectionId, ServerHandle};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::Config;
use super::node::{MemberId, NodeId};
use super::shared::{lock, Inner};
use super::stats::{Sent, Stats};
use super::tasks::{heartbeat, publisher, receiver};
use crate::envelope::{Envelope, Kind};
use crate::history::UNKNOWN_PREV;
use crate::queue::bounded;
use crate::{Bus, Error, Result, Stamp};

/// Broadcasts and rooms that reach the members of every server attached to
/// the same [`Bus`]: a layer beside the server's registry, which it reads
/// through the [`ServerHandle`].
///
/// Every send is delivered to this server's members at once (as
/// [`ServerHandle::broadcast`]: queued without waiting, under each
/// connection's slow-consumer policy) and queued for the bus, from which
/// every other server delivers it to its own. A server ignores its own
/// publications (each carries its [`NodeId`]), so no member gets a message
/// twice. One task publishes in order, so messages from one server arrive
/// everywhere in the order they were sent.
///
/// Rooms are local state: [`Cluster::join`] adds a connection of this
/// server; a message to a room reaches the room's members on every server.
/// [`Cluster::members`] lists them across servers from presence heartbeats.
///
/// When the bus is down, local delivery goes on; what could not be
/// published is counted ([`Stats::publish_failures`]), and reported to a
/// caller that awaits it ([`Cluster::to_room_confirmed`]).
///
/// With [`Config::history`], room messages are also kept on the bus for a
/// while, and a member that reconnects to any server gets what it missed
/// ([`Cluster::recover`]; each message carries a [`Stamp`], a member keeps a
/// [`Cursor`](crate::Cursor)).
///
/// ```
/// use std::sync::Arc;
/// use enchufe::bus::{self, Cluster, MemoryBus};
/// use enchufe::{handler_fn, Server};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Arc::new(MemoryBus::new());
/// let echo = || handler_fn(|req: String, _conn| async move {
///     Ok::<_, std::convert::Infallible>(Some(req))
/// });
/// let a = Server::bind("127.0.0.1:0").await?.serve(echo());
/// let b = Server::bind("127.0.0.1:0").await?.serve(echo());
/// let on_a = Cluster::attach(&a, bus.clone(), bus::Config::default())?;
/// let on_b = Cluster::attach(&b, bus, bus::Config::default())?;
/// // Reaches the connections of a at once, and those of b through the bus.
/// on_a.broadcast("hola a todos")?;
/// # on_a.detach().await; on_b.detach().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cluster {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.node)
            .field("bus", &self.inner.bus)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Cluster {
    /// Attaches the server behind `handle` to `bus`: subscribes, and starts
    /// the tasks that publish, receive and send heartbeats (until
    /// [`Cluster::detach`], or the last clone of the cluster is dropped).
    ///
    /// # Errors
    /// As [`Bus::subscribe`].
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn attach(handle: &ServerHandle, bus: Arc<dyn Bus>, config: Config) -> Result<Cluster> {
        let subscription = bus.subscribe(&[&config.channel], config.max_incoming_bytes)?;
        let (outgoing, drain) = bounded(config.max_outgoing_bytes);
        let inner = Arc::new(Inner {
            handle: handle.clone(),
            bus,
            node: NodeId::random(),
            rooms: Mutex::default(),
            remote: Mutex::default(),
            outgoing,
            positions: Mutex::default(),
            recovering: Mutex::default(),
            recovering_count: AtomicUsize::new(0),
            settled: watch::Sender::new(0),
            published: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            received: AtomicU64::new(0),
            caught_up: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            incoming_dropped: AtomicU64::new(0),
            closing: CancellationToken::new(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config,
        });
        // The tasks hold only a weak reference, so dropping every Cluster
        // ends them.
        let weak = Arc::downgrade(&inner);
        let (closing, cancel) = (inner.closing.clone(), inner.cancel.clone());
        inner
            .tasks
            .spawn(publisher(weak.clone(), drain, closing.clone(), cancel));
        inner
            .tasks
            .spawn(receiver(weak.clone(), subscription, closing.clone()));
        inner.tasks.spawn(heartbeat(weak, closing));
        inner.tasks.close();
        Ok(Cluster { inner })
    }

    /// This server's id in the cluster.
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// The cluster-wide id of this server's connection `conn`.
    pub fn member(&self, conn: ConnectionId) -> MemberId {
        MemberId {
            node: self.inner.node,
            conn,
        }
    }

    /// Sends `msg` to every connection of every server. Returns how many
    /// local connections it was queued to.
    ///
    /// # Errors
    /// [`Error::Encode`] if `msg` does not encode; [`Error::TooLarge`] over
    /// [`Config::max_message_bytes`]; [`Error::Closed`] after
    /// [`Cluster::detach`].
    pub fn broadcast<M: Encode>(&self, msg: M) -> Result<usize> {
        self.send(None, None, |_| msg, None).map(|(local, _)| local)
    }

    /// [`Cluster::broadcast`] to everyone but `except`, a connection of
    /// this server (a chat relaying a member's message to the others).
    ///
    /// # Errors
    /// As [`Cluster::broadcast`].
    pub fn broadcast_except<M: Encode>(&self, except: ConnectionId, msg: M) -> Result<usize> {
        self.send(None, Some(except), |_| msg, None)
            .map(|(local, _)| local)
    }

    /// Sends `msg` to the members of `room` on every server. Returns how
    /// many local members it was queued to.
    ///
    /// # Errors
    /// As [`Cluster::broadcast`]; [`Error::TooLarge`] for a room name over
    /// [`Config::max_room_name`].
    pub fn to_room<M: Encode>(&self, room: &str, msg: M) -> Result<usize> {
        self.check_room(room)?;
        self.send(Some(room), None, |_| msg, None)
            .map(|(local, _)| local)
    }

    /// [`Cluster::to_room`] to every member but `except`, a connection of
    /// this server.
    ///
    /// # Errors
    /// As [`Cluster::to_room`].
    pub fn to_room_except<M: Encode>(
        &self,
        room: &str,
        except: ConnectionId,
        msg: M,
    ) -> Result<usize> {
        self.check_room(room)?;
        self.send(Some(room), Some(except), |_| msg, None)
            .map(|(local, _)| local)
    }

    /// [`Cluster::to_room`] (to everyone but `except`, if given) of the
    /// message `make` builds from the message's [`Stamp`], so that members
    /// can keep a [`Cursor`](crate::Cursor) for [`Cluster::recover`]. Returns the stamp.
    ///
    /// # Errors
    /// As [`Cluster::to_room`].
    pub fn to_room_with<M: Encode>(
        &self,
        room: &str,
        except: Option<ConnectionId>,
        make: impl FnOnce(Stamp) -> M,
    ) -> Result<Stamp> {
        self.check_room(room)?;
        let (_, stamp) = self.send(
            Some(room),
            except,
            |stamp| make(stamp.expect("room messages are stamped")),
            None,
        )?;
        Ok(stamp.expect("room messages are stamped"))
    }

    /// [`Cluster::to_room`] (to everyone but `except`, if given), then
    /// waits for the bus's answer: which servers it reached, or why it did
    /// not reach the others. Local members get it at once in any case.
    ///
    /// # Errors
    /// As [`Cluster::to_room`]; then, for the bus: [`Error::Unavailable`]
    /// or [`Error::Timeout`] (the bus is down or slow: it reached no other
    /// server), [`Error::Full`] (the outgoing queue was full), or
    /// [`Error::Closed`] (detached before it was published).
    ///
    /// # Cancel safety
    /// Dropping the future does not cancel the send: the message is
    /// already delivered locally and queued for the bus.
    pub async fn to_room_confirmed<M: Encode>(
        &self,
        room: &str,
        except: Option<ConnectionId>,
        msg: M,
    ) -> Result<Sent> {
        self.check_room(room)?;
        self.confirmed(Some(room), except, msg).await
    }

    /// [`Cluster::broadcast`] (to everyone but `except`, if given), then
    /// waits for the bus's answer, as [`Cluster::to_room_confirmed`].
    ///
    /// # Errors
    /// As [`Cluster::to_room_confirmed`].
    ///
    /// # Cancel safety
    /// As [`Cluster::to_room_confirmed`].
    pub async fn broadcast_confirmed<M: Encode>(
        &self,
        except: Option<ConnectionId>,
        msg: M,
    ) -> Result<Sent> {
        self.confirmed(None, except, msg).await
    }

    async fn confirmed<M: Encode>(
        &self,
        room: Option<&str>,
        except: Option<ConnectionId>,
        msg: M,
    ) -> Result<Sent> {
        let expected = self.nodes().len();
        let (tx, rx) = oneshot::channel();
        let (local, _) = self.send(room, except, |_| msg, Some(tx))?;
        let reached = match rx.await {
            Ok(answer) => answer?,
            // Dropped unanswered: the queue was full, or the cluster
            // stopped before publishing it.
            Err(_) if self.inner.closing.is_cancelled() => return Err(Error::Closed),
            Err(_) => return Err(Error::Full),
        };
        Ok(Sent {
            local,
            reached,
            expected,
        })
    }

    /// Adds this server's connection `conn` to `room`. A connection that
    /// closes leaves its rooms by itself.
    ///
    /// # Errors
    /// [`Error::TooLarge`] for a room name over [`Config::max_room_name`].
    pub fn join(&self, room: &str, conn: ConnectionId) -> Result<()> {
        self.check_room(room)?;
        lock(&self.inner.rooms)
            .entry(room.to_owned())
            .or_default()
            .insert(conn);
        Ok(())
    }

    /// Removes `conn` from `room`; `false` if it was not in it.
    pub fn leave(&self, room: &str, conn: ConnectionId) -> bool {
        let mut rooms = lock(&self.inner.rooms);
        let Some(members) = rooms.get_mut(room) else {
            return false;
        };
        let was = members.remove(&conn);
        if members.is_empty() {
            rooms.remove(room);
        }
        drop(rooms);
        self.inner.stop_skipping(conn, room);
        was
    }

    /// The members of `room` on every server: this server's now, the
    /// others' as of their last heartbeat within [`Config::presence_ttl`].
    /// Sorted.
    pub fn members(&self, room: &str) -> Vec<MemberId> {
        let mut members: Vec<MemberId> = self
            .inner
            .local_members(room)
            .into_iter()
            .map(|conn| self.member(conn))
            .collect();
        let now = Instant::now();
        for (node, (seen, rooms)) in lock(&self.inner.remote).iter() {
            if now.duration_since(*seen) > self.inner.config.presence_ttl {
                continue;
            }
            for (name, conns) in rooms {
                if name == room {
                    members.extend(conns.iter().map(|&conn| MemberId {
                        node: *node,
                        conn: ConnectionId(conn),
                    }));
                }
            }
        }
        members.sort();
        members
    }

    /// The rooms with a member on some server (this server's now, the
    /// others' as of their last heartbeat within [`Config::presence_ttl`]).
    /// Sorted.
    pub fn rooms(&self) -> Vec<String> {
        let names: Vec<String> = lock(&self.inner.rooms).keys().cloned().collect();
        let mut rooms: Vec<String> = names
            .into_iter()
            .filter(|name| !self.inner.local_members(name).is_empty())
            .collect();
        let now = Instant::now();
        for (seen, remote) in lock(&self.inner.remote).values() {
            if now.duration_since(*seen) <= self.inner.config.presence_ttl {
                rooms.extend(
                    remote
                        .iter()
                        .filter(|(_, members)| !members.is_empty())
                        .map(|(name, _)| name.clone()),
                );
            }
        }
        rooms.sort();
        rooms.dedup();
        rooms
    }

    /// The servers heard from within [`Config::presence_ttl`], this one
    /// included. Sorted.
    pub fn nodes(&self) -> Vec<NodeId> {
        let now = Instant::now();
        let mut nodes: Vec<NodeId> = lock(&self.inner.remote)
            .iter()
            .filter(|(_, (seen, _))| now.duration_since(*seen) <= self.inner.config.presence_ttl)
            .map(|(node, _)| *node)
            .collect();
        nodes.push(self.inner.node);
        nodes.sort();
        nodes
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        Stats {
            published: inner.published.load(Ordering::Relaxed),
            publish_failures: inner.publish_failures.load(Ordering::Relaxed),
            outgoing_dropped: inner.outgoing.dropped(),
            received: inner.received.load(Ordering::Relaxed),
            caught_up: inner.caught_up.load(Ordering::Relaxed),
            missed: inner.missed.load(Ordering::Relaxed),
            incoming_dropped: inner.incoming_dropped.load(Ordering::Relaxed),
        }
    }

    /// Leaves the cluster: publishes what is still queued, tells the other
    /// servers (so this server's members leave their presence at once),
    /// stops the tasks and waits for them, all within
    /// [`Config::detach_timeout`]. Later sends fail with [`Error::Closed`].
    pub async fn detach(self) {
        let inner = &self.inner;
        if inner.closing.is_cancelled() {
            return;
        }
        inner.closing.cancel();
        let limit = inner.config.detach_timeout;
        let started = Instant::now();
        enchufe_engine::grace::drain(&inner.tasks, limit, || inner.cancel.cancel()).await;
        let gone = Envelope {
            node: inner.node,
            kind: Kind::Gone,
            payload: Bytes::new(),
        };
        let _ = tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            inner.bus.publish(&inner.config.channel, gone.encode()),
        )
        .await;
    }

    pub(super) fn check_room(&self, room: &str) -> Result<()> {
        let limit = self.inner.config.max_room_name.min(u16::MAX as usize);
        if room.len() > limit {
            return Err(Error::TooLarge {
                what: "room name",
                len: room.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Delivers locally and queues for the bus the message `make` builds
    /// (from its stamp, for a room message). Returns the local count and
    /// the stamp.
    fn send<M: Encode>(
        &self,
        room: Option<&str>,
        except: Option<ConnectionId>,
        make: impl FnOnce(Option<Stamp>) -> M,
        confirm: Option<oneshot::Sender<Result<usize>>>,
    ) -> Result<(usize, Option<Stamp>)> {
        let inner = &*self.inner;
        if inner.closing.is_cancelled() {
            return Err(Error::Closed);
        }
        let encode = |msg: M| {
            let frame = msg.encode().map_err(Error::Encode)?;
            if frame.len() > inner.config.max_message_bytes {
                return Err(Error::TooLarge {
                    what: "message",
                    len: frame.len(),
                    limit: inner.config.max_message_bytes,
                });
            }
            Ok(frame)
        };
        let Some(room) = room else {
            let frame = encode(make(None))?;
            let delivered = inner.deliver(&Kind::All, inner.node, except, frame.clone());
            inner.queue(Kind::All, frame, None, confirm);
            return Ok((delivered, None));
        };
        // Numbered, delivered and queued under one lock: this server's
        // messages reach everyone (and the history) in their numbers'
        // order, which recovery relies on.
        let mut positions = lock(&inner.positions);
        let seq = positions.seq + 1;
        let stamp = Stamp {
            node: inner.node,
            seq,
        };
        let frame = encode(make(Some(stamp)))?;
        positions.seq = seq;
        let prev = positions
            .record(room, inner.node, seq)
            .unwrap_or(if positions.forgot { UNKNOWN_PREV } else { 0 });
        let kind = Kind::Room {
            room: room.to_owned(),
            seq,
            prev,
        };
        let delivered = inner.deliver(&kind, inner.node, except, frame.clone());
        let log = inner.config.history.map(|_| inner.log(room));
        if log.is_some() {
            positions.logged += 1;
        }
        inner.queue(kind, frame, log, confirm);
        Ok((delivered, Some(stamp)))
    }
}
