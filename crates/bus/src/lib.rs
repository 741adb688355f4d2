//! Fan-out across servers: broadcasts and rooms that reach the members of
//! every server attached to the same bus.
//!
//! When a chat outgrows one box, several servers run behind a load
//! balancer, and [`ServerHandle::broadcast`](enchufe_server::ServerHandle::broadcast)
//! reaches only its own process. A [`Cluster`] sits beside each server's
//! registry: it delivers to local members at once and publishes on a
//! [`Bus`], from which every other server delivers to its own members.
//!
//! ```text
//!   server A                      bus (Redis pub/sub,           server B
//!   Cluster::to_room ──local──▶    or in-process)               members
//!        │                    ┌──────────────────┐                ▲
//!        └──envelope (node A)─▶  channel "enchufe" ─▶ Cluster B ───┘
//!                             └──────────────────┘  (skips node A's
//!                                                    own echo on A)
//! ```
//!
//! - [`Bus`]: publish bytes to a channel, subscribe to channels into a
//!   queue bounded in bytes (what does not fit is dropped and counted).
//!   [`MemoryBus`] in one process; `RedisBus` (feature `redis`) on Redis
//!   pub/sub, reconnecting with backoff and subscribing again.
//! - [`Cluster`]: broadcast, broadcast except a member, rooms (join, leave,
//!   send, send except a member), presence ([`Cluster::members`]) from
//!   heartbeats with a TTL.
//!
//! # The Redis bus
//!
//! Crate: `redis` (redis-rs), the kept Rust client, with tokio (its 1.x
//! builds on Rust 1.88). Publishing goes through one multiplexed
//! connection, so one server's messages reach Redis in the order sent; each
//! subscription has a pub/sub connection of its own, as Redis requires.
//!
//! Plain pub/sub (`PUBLISH`/`SUBSCRIBE`), not sharded (`SPUBLISH`, Redis 7):
//! on one Redis, or a primary with replicas, they behave alike; sharded
//! pub/sub pays only in a Redis Cluster, where plain pub/sub sends every
//! message to every node. A cluster of enchufe servers uses one channel,
//! which would sit on one shard anyway, and plain pub/sub works with every
//! Redis and with Valkey.
//!
//! A publish that fails drops the connection; the next one reconnects, no
//! sooner than a backoff doubling from `RedisConfig::min_backoff` (100 ms)
//! to `RedisConfig::max_backoff` (2 s), and until then publishes fail at
//! once with [`Error::Unavailable`]. A subscription whose connection ends
//! connects and subscribes again with the same backoff; it also pings Redis
//! every `RedisConfig::keepalive` (5 s), so a connection that died without
//! a word (a cut network) is replaced too.
//!
//! Delivery through the bus is at most once: pub/sub keeps nothing, so a
//! server cut from the bus misses what was published meanwhile (counted
//! where it can be: failed publishes, full queues; a send awaited with
//! [`Cluster::to_room_confirmed`] says which servers it reached).
//!
//! # Recovery
//!
//! With [`Config::history`], each room message is also appended to a
//! history on the bus (a Redis Stream per room, `XADD MAXLEN ~`, in the
//! same round trip and before the `PUBLISH`), kept for [`History`]'s
//! window (default 1,000 messages or 2 minutes per room). Each room
//! message carries a [`Stamp`] (its server and number there, with the
//! number of that server's previous message to the room); a member keeps a
//! [`Cursor`] (the last stamp seen from each server), and when it
//! reconnects to any server, [`Cluster::recover`] replays what it missed,
//! in order and none twice, or tells it that some were past the window
//! ([`Recovery::Incomplete`]). The history can be ahead of a server's
//! subscription (a message appended and published is still on its way to
//! the subscribers): a live message at or before what the member has is
//! not delivered to it again.
//!
//! The histories also heal a server whose subscription was lost (Redis
//! restarted, a cut network): when it subscribes again it first delivers,
//! from the histories of its rooms, what it missed meanwhile
//! ([`Stats::caught_up`]), so its members lose nothing.
//!
//! ```text
//! history of room "sala" (oldest first)
//!   A#7 (prev 5)   B#3 (prev 0)   A#9 (prev 7)   B#4 (prev 3)
//! cursor { A: 7, B: 0 } -> replays B#3, A#9, B#4: complete
//! cursor { A: 2 }       -> A#7 points back at 5, not 2: incomplete
//! ```

mod bus;
mod cluster;
mod envelope;
mod error;
mod history;
mod memory;
mod queue;
#[cfg(feature = "redis")]
mod redis;

pub use crate::bus::{Bus, Message, Subscription};
#[cfg(feature = "redis")]
pub use crate::redis::{RedisBus, RedisConfig, RedisStats};
pub use cluster::{Cluster, Config, MemberId, NodeId, Sent, Stats};
pub use error::{Error, Result};
pub use history::{Cursor, History, ParseError, Recovery, Stamp};
pub use memory::MemoryBus;
