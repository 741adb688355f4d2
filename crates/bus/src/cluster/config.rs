//! The settings of a cluster.

use std::time::Duration;

use crate::History;

/// Settings of a [`Cluster`](crate::Cluster).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The bus channel the servers of one cluster share. Default
    /// `"enchufe"`; two clusters on one Redis take different names.
    pub channel: String,
    /// Bytes of publications waiting for the bus; past it a message still
    /// reaches local members but not the bus, and is counted in
    /// [`Stats::outgoing_dropped`](crate::Stats::outgoing_dropped). Default 4 MiB: a few seconds of a
    /// busy chat while Redis is slow, without growing memory.
    pub max_outgoing_bytes: usize,
    /// Bytes received from the bus not yet delivered to local members;
    /// past it messages are dropped and counted ([`Stats::incoming_dropped`](crate::Stats::incoming_dropped)).
    /// Default 4 MiB, for the same reason.
    pub max_incoming_bytes: usize,
    /// The longest message sent through the cluster. Default 1 MiB.
    pub max_message_bytes: usize,
    /// The longest room name, in bytes. Default 255.
    pub max_room_name: usize,
    /// How often a server tells the others who is in its rooms. Default
    /// 1 s.
    pub heartbeat: Duration,
    /// How long a server's members stay in [`Cluster::members`](crate::Cluster::members) after its
    /// last heartbeat: a crashed server's members are gone within it.
    /// Default 3 s, three heartbeats, so one lost heartbeat does not
    /// make members flicker.
    pub presence_ttl: Duration,
    /// The largest presence heartbeat, in bytes; rooms past it are left out
    /// of presence (their messages are still delivered). Default 256 KiB,
    /// about 30,000 members per server.
    pub max_presence_bytes: usize,
    /// How long [`Cluster::detach`](crate::Cluster::detach) may take to publish what is still
    /// queued and say goodbye, and how long [`Cluster::recover`](crate::Cluster::recover) waits for
    /// this server's own messages still on their way to the history.
    /// Default 2 s, the Redis bus's command timeout: past it, what is left
    /// is dropped (and a recovery is reported incomplete).
    pub detach_timeout: Duration,
    /// Each room's recent messages kept on the bus for members that
    /// reconnect ([`Cluster::recover`](crate::Cluster::recover)), or `None` to keep none. Default
    /// `None`: pub/sub alone is one command per message, history makes it
    /// a pipeline of three and memory on the bus; turn it on with
    /// `Some(History::default())` (1,000 messages or 2 minutes per room).
    /// On a bus that keeps no history ([`Bus::publish_logged`](crate::Bus::publish_logged) answers
    /// [`Error::NoHistory`](crate::Error::NoHistory)) messages are published all the same and
    /// [`Cluster::recover`](crate::Cluster::recover) fails with that error.
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
