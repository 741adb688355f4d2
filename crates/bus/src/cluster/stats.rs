//! What a cluster counted, and what one send awaited to the bus did.

/// Counters of a [`Cluster`](crate::Cluster).
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
    /// ([`Config::history`](crate::Config::history)).
    pub caught_up: u64,
    /// Gaps such a catch-up found (messages trimmed from a history before
    /// it was read, or a history that could not be read).
    pub missed: u64,
}

/// What a send awaited to the bus did ([`Cluster::to_room_confirmed`](crate::Cluster::to_room_confirmed),
/// [`Cluster::broadcast_confirmed`](crate::Cluster::broadcast_confirmed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// Local connections it was queued to.
    pub local: usize,
    /// Servers whose subscription took it, this one's included (as the
    /// bus counts its subscriptions).
    pub reached: usize,
    /// Servers in the cluster when it was sent, this one included
    /// ([`Cluster::nodes`](crate::Cluster::nodes)).
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
