//! Which link carries each peer: one per peer, whoever dialed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use enchufe_server::{Connection, Disconnect, Handler};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

/// Something that happened to this peer's links.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A link to the peer `id` is up (after the hello exchange).
    Up {
        /// The other peer's node id.
        id: String,
        /// Its address, as this end sees it.
        addr: SocketAddr,
    },
    /// The link to the peer `id` is gone and no other link to it remains.
    Down {
        /// The other peer's node id.
        id: String,
    },
    /// Dialing `addr` ran out of attempts ([`Backoff`](crate::Backoff)); it
    /// is not dialed again unless asked.
    Unreachable {
        /// The address that was dialed.
        addr: String,
    },
}

/// The live links by peer id, shared by the handler wrapper (which sees links
/// come and go) and the [`Peer`](crate::Peer) handles.
#[derive(Debug)]
pub(crate) struct Table {
    me: String,
    links: Mutex<HashMap<String, Connection>>,
    events: broadcast::Sender<PeerEvent>,
    /// Bumped on every change of `links`, for waiters.
    changed: watch::Sender<u64>,
}

impl Table {
    pub(crate) fn new(me: String, event_queue: usize) -> Table {
        Table {
            me,
            links: Mutex::new(HashMap::new()),
            events: broadcast::channel(event_queue.max(1)).0,
            changed: watch::channel(0).0,
        }
    }

    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    fn links(&self) -> MutexGuard<'_, HashMap<String, Connection>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Connection> {
        self.links().get(id).filter(|c| !c.is_closed()).cloned()
    }

    pub(crate) fn all(&self) -> Vec<(String, Connection)> {
        let mut all: Vec<_> = self
            .links()
            .iter()
            .filter(|(_, c)| !c.is_closed())
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn emit(&self, event: PeerEvent) {
        // No receiver is fine: nobody is listening.
        let _ = self.events.send(event);
    }

    /// Who dialed `conn`: the tie-break looks at that.
    fn dialer<'a>(&'a self, conn: &Connection, remote: &'a str) -> &'a str {
        if conn.is_outbound() {
            &self.me
        } else {
            remote
        }
    }

    /// A peer link finished its hello: keep it, or retire it if the peer
    /// already has one. Of two live links between the same two peers, both
    /// ends keep the one dialed by the peer with the smaller id (the newer one
    /// if the same peer dialed both), so both ends keep the same link without
    /// a word exchanged.
    fn link_up(&self, conn: &Connection) {
        let Some(remote) = conn.node_id().map(str::to_owned) else {
            return;
        };
        if remote == self.me {
            warn!("connected to a peer with our own id; dropping the link");
            conn.close();
            return;
        }
        let mut links = self.links();
        let retired = match links.get(&remote) {
            Some(old) if !old.is_closed() => {
                let winner = self.me.as_str().min(remote.as_str());
                let old_wins =
                    self.dialer(old, &remote) == winner && self.dialer(conn, &remote) != winner;
                if old_wins {
                    drop(links);
                    debug!(peer = %remote, "second link to a peer; retiring the new one");
                    conn.drain();
                    return;
                }
                links.insert(remote.clone(), conn.clone())
            }
            _ => links.insert(remote.clone(), conn.clone()),
        };
        // Events go out under the lock, so that they are in the order the
        // table changed (an `Up` never overtakes the `Down` before it).
        self.changed.send_modify(|n| *n += 1);
        match retired {
            Some(old) if !old.is_closed() => {
                debug!(peer = %remote, "second link to a peer; retiring the old one");
                old.drain();
            }
            Some(_) => debug!(peer = %remote, "link replaced"),
            None => {
                info!(peer = %remote, addr = %conn.peer_addr(), "peer up");
                self.emit(PeerEvent::Up {
                    id: remote,
                    addr: conn.peer_addr(),
                });
            }
        }
    }

    /// A link ended: if it was the peer's link, the peer is down.
    fn link_down(&self, conn: &Connection) {
        let Some(remote) = conn.node_id() else {
            return;
        };
        let mut links = self.links();
        if links.get(remote).is_some_and(|c| c.id() == conn.id()) {
            links.remove(remote);
            self.changed.send_modify(|n| *n += 1);
            info!(peer = %remote, "peer down");
            self.emit(PeerEvent::Down {
                id: remote.to_owned(),
            });
        }
    }
}

/// The user's handler, plus the bookkeeping of peer links.
pub(crate) struct PeerHandler<H> {
    pub(crate) inner: H,
    pub(crate) table: std::sync::Arc<Table>,
}

impl<H: Handler> Handler for PeerHandler<H> {
    type Request = H::Request;
    type Response = H::Response;
    type Error = H::Error;

    fn handle(
        &self,
        request: Self::Request,
        conn: &Connection,
    ) -> impl std::future::Future<Output = Result<Option<Self::Response>, Self::Error>> + Send {
        self.inner.handle(request, conn)
    }

    async fn on_connect(&self, conn: &Connection) {
        if conn.is_peer() {
            self.table.link_up(conn);
        }
        self.inner.on_connect(conn).await;
    }

    async fn on_disconnect(&self, conn: &Connection, reason: &Disconnect) {
        if conn.is_peer() {
            self.table.link_down(conn);
        }
        self.inner.on_disconnect(conn, reason).await;
    }
}
