//! Broadcasts and rooms across every server attached to one bus: the
//! [`Cluster`] handle and its sends here; where each room stands
//! (`positions`), a member's recovery and a server's catch-up
//! (`recovery`), and the tasks that publish, receive and send heartbeats
//! (`tasks`) beside it.

mod positions;
mod recovery;
mod tasks;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use enchufe_framing::Encode;
use enchufe_server::{ConnectionId, ServerHandle};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::envelope::{decode_presence, encode_presence, Envelope, Kind};
use crate::history::UNKNOWN_PREV;
use crate::queue::{bounded, Feed};
use crate::{Bus, Error, History, Result, Stamp};
use positions::Positions;
use recovery::Pending;
use tasks::{heartbeat, publisher, receiver};

/// Settings of a [`Cluster`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The bus channel the servers of one cluster share. Default
    /// `"enchufe"`; two clusters on one Redis take different names.
    pub channel: String,
    /// Bytes of publications waiting for the bus; past it a message still
    /// reaches local members but not the bus, and is counted in
    /// [`Stats::outgoing_dropped`]. Default 4 MiB: a few seconds of a
    /// busy chat while Redis is slow, without growing memory.
    pub max_outgoing_bytes: usize,
    /// Bytes received from the bus not yet delivered to local members;
    /// past it messages are dropped and counted ([`Stats::incoming_dropped`]).
    /// Default 4 MiB, for the same reason.
    pub max_incoming_bytes: usize,
    /// The longest message sent through the cluster. Default 1 MiB.
    pub max_message_bytes: usize,
    /// The longest room name, in bytes. Default 255.
    pub max_room_name: usize,
    /// How often a server tells the others who is in its rooms. Default
    /// 1 s.
    pub heartbeat: Duration,
    /// How long a server's members stay in [`Cluster::members`] after its
    /// last heartbeat: a crashed server's members are gone within it.
    /// Default 3 s, three heartbeats, so one lost heartbeat does not
    /// make members flicker.
    pub presence_ttl: Duration,
    /// The largest presence heartbeat, in bytes; rooms past it are left out
    /// of presence (their messages are still delivered). Default 256 KiB,
    /// about 30,000 members per server.
    pub max_presence_bytes: usize,
    /// How long [`Cluster::detach`] may take to publish what is still
    /// queued and say goodbye, and how long [`Cluster::recover`] waits for
    /// this server's own messages still on their way to the history.
    /// Default 2 s, the Redis bus's command timeout: past it, what is left
    /// is dropped (and a recovery is reported incomplete).
    pub detach_timeout: Duration,
    /// Each room's recent messages kept on the bus for members that
    /// reconnect ([`Cluster::recover`]), or `None` to keep none. Default
    /// `None`: pub/sub alone is one command per message, history makes it
    /// a pipeline of three and memory on the bus; turn it on with
    /// `Some(History::default())` (1,000 messages or 2 minutes per room).
    /// On a bus that keeps no history ([`Bus::publish_logged`] answers
    /// [`Error::NoHistory`]) messages are published all the same and
    /// [`Cluster::recover`] fails with that error.
    pub history: Option<History>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            channel: "enchufe".into(),
            max_outgoing_bytes: 4 << 20,
            max_incoming_bytes: 4 << 20,
            max_message_bytes: 1 << 20,
            max_room_name: 255,
            heartbeat: Duration::from_secs(1),
            presence_ttl: Duration::from_secs(3),
            max_presence_bytes: 256 << 10,
            detach_timeout: Duration::from_secs(2),
            history: None,
        }
    }
}

/// A publication waiting for the bus.
struct Outgoing {
    envelope: Bytes,
    /// The room history it goes to (a room message with history on).
    log: Option<String>,
    /// The caller awaiting the bus's answer, if any.
    confirm: Option<oneshot::Sender<Result<usize>>>,
}

/// One server of a cluster, chosen at random when it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u128);

impl NodeId {
    /// A fresh random id (std's per-process random hash keys mixed with the
    /// clock and the process id: unique enough to tell servers apart, with
    /// no extra dependency).
    fn random() -> NodeId {
        let half = || {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            hasher.write_u32(std::process::id());
            hasher.finish() as u128
        };
        NodeId(half() << 64 | half())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A connection anywhere in the cluster: its server and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    /// The server it is connected to.
    pub node: NodeId,
    /// Its id on that server.
    pub conn: ConnectionId,
}

/// Counters of a [`Cluster`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages the bus took.
    pub published: u64,
    /// Publications the bus refused or lost (down, timed out): those
    /// messages reached local members only.
    pub publish_failures: u64,
    /// Messages dropped before the bus because the outgoing queue was full.
    pub outgoing_dropped: u64,
    /// Messages from other servers delivered here.
    pub received: u64,
    /// Messages from other servers dropped because the incoming queue was
    /// full.
    pub incoming_dropped: u64,
    /// Messages from other servers delivered here from the histories,
    /// after this server's subscription was lost and came back
    /// ([`Config::history`]).
    pub caught_up: u64,
    /// Gaps such a catch-up found (messages trimmed from a history before
    /// it was read, or a history that could not be read).
    pub missed: u64,
}

/// What a send awaited to the bus did ([`Cluster::to_room_confirmed`],
/// [`Cluster::broadcast_confirmed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// Local connections it was queued to.
    pub local: usize,
    /// Servers whose subscription took it, this one's included (as the
    /// bus counts its subscriptions).
    pub reached: usize,
    /// Servers in the cluster when it was sent, this one included
    /// ([`Cluster::nodes`]).
    pub expected: usize,
}

impl Sent {
    /// Every server heard of when it was sent took it. `false`: some
    /// server's subscription was down (reconnecting), or a server that
    /// crashed is still within its presence TTL; their members did not get
    /// it through the bus.
    pub fn everywhere(&self) -> bool {
        self.reached >= self.expected
    }
}

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
    inner: Arc<Inner>,
}

/// A server's rooms and the connection ids in each, as a heartbeat tells.
type Rooms = Vec<(String, Vec<u64>)>;

struct Inner {
    handle: ServerHandle,
    bus: Arc<dyn Bus>,
    config: Config,
    node: NodeId,
    /// This server's rooms: the only copy; other servers learn them from
    /// heartbeats.
    rooms: Mutex<HashMap<String, HashSet<ConnectionId>>>,
    /// Other servers' rooms from their last heartbeat, and when it came.
    remote: Mutex<HashMap<NodeId, (Instant, Rooms)>>,
    outgoing: Feed<Outgoing>,
    /// Where each room stands: this server's numbering, and the last
    /// message heard from each server per room.
    positions: Mutex<Positions>,
    /// Connections being recovered, per room: live room messages wait here
    /// until the replay is queued, so they come after it and none twice.
    recovering: Mutex<HashMap<(ConnectionId, String), Pending>>,
    /// `recovering.len()`, read without the lock on every room message.
    recovering_count: AtomicUsize,
    /// Logged room messages that left the outgoing queue (published,
    /// failed or dropped), against `Positions::logged`: recovery waits for
    /// this server's own to reach the history.
    settled: watch::Sender<u64>,
    published: AtomicU64,
    publish_failures: AtomicU64,
    received: AtomicU64,
    caught_up: AtomicU64,
    missed: AtomicU64,
    incoming_dropped: AtomicU64,
    /// Detaching: sends are refused, the publisher empties its queue.
    closing: CancellationToken,
    /// Stop now, whatever is queued (detaching took too long).
    cancel: CancellationToken,
    tasks: TaskTracker,
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        if tokio::time::timeout(limit, inner.tasks.wait())
            .await
            .is_err()
        {
            inner.cancel.cancel();
            inner.tasks.wait().await;
        }
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

    fn check_room(&self, room: &str) -> Result<()> {
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

impl Inner {
    /// This server's live members of `room`; forgets those that closed.
    fn local_members(&self, room: &str) -> Vec<ConnectionId> {
        let mut rooms = lock(&self.rooms);
        let Some(members) = rooms.get_mut(room) else {
            return Vec::new();
        };
        members.retain(|id| self.handle.connection(*id).is_some());
        let live: Vec<ConnectionId> = members.iter().copied().collect();
        if live.is_empty() {
            rooms.remove(room);
        }
        live
    }

    /// The bus key of `room`'s history.
    fn log(&self, room: &str) -> String {
        format!("{}:history:{room}", self.config.channel)
    }

    /// Queues an envelope for the publisher. A logged one that does not
    /// fit is settled at once (it will never reach the history).
    fn queue(
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
    /// message from `node`).
    fn deliver(
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
                let mut delivered = 0;
                for id in members.into_iter().filter(|id| Some(*id) != except) {
                    let key = (id, room.clone());
                    if let Some(pending) = held.as_mut().and_then(|map| map.get_mut(&key)) {
                        // Being recovered: after the replay.
                        let stamp = Stamp { node, seq: *seq };
                        let limit = self.config.max_incoming_bytes;
                        delivered += usize::from(pending.hold(stamp, *prev, &frame, limit));
                        continue;
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
    fn on_message(&self, payload: Bytes) {
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
                if let Kind::Room { room, seq, .. } = &kind {
                    let mut positions = lock(&self.positions);
                    let last = positions.record(room, envelope.node, *seq);
                    if let Some(last) = last.filter(|&last| last >= *seq) {
                        // Delivered already (by a catch-up, or a bus that
                        // repeats itself): never twice, never backwards.
                        positions.record(room, envelope.node, last);
                        return;
                    }
                }
                self.deliver(&kind, envelope.node, None, envelope.payload);
            }
        }
    }

    fn presence(&self) -> Bytes {
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
