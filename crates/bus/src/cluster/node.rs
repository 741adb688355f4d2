//! Who is who in a cluster: a server ([`NodeId`]) and a connection on
//! it ([`MemberId`]).

use std::fmt;
use std::hash::{BuildHasher, Hasher};

use enchufe_server::ConnectionId;

/// One server of a cluster, chosen at random when it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u128);

impl NodeId {
    /// A fresh random id (std's per-process random hash keys mixed with the
    /// clock and the process id: unique enough to tell servers apart, with
    /// no extra dependency).
    pub(super) fn random() -> NodeId {
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
