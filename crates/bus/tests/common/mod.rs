//! Servers attached to one bus, and clients that read what reaches them.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use enchufe::bus::{self, Bus, Cluster};
use enchufe::client::Client;
use enchufe::server::ConnectionId;
use enchufe::{handler_fn, Server, ServerHandle};

/// Generous: only to prove "not hung" on a busy machine.
pub const WAIT: Duration = Duration::from_secs(10);

/// A cluster configuration with fast heartbeats, so presence settles in
/// tenths of a second.
pub fn config() -> bus::Config {
    let mut config = bus::Config::default();
    config.heartbeat = Duration::from_millis(50);
    config.presence_ttl = Duration::from_millis(300);
    config
}

/// One server attached to `bus`, and its clients with their connection ids.
pub struct Node {
    pub server: ServerHandle,
    pub cluster: Cluster,
    pub clients: Vec<(Client, ConnectionId)>,
}

impl Node {
    /// A server on 127.0.0.1:0 attached to `bus`, with `clients` clients.
    pub async fn start(bus: Arc<dyn Bus>, config: bus::Config, clients: usize) -> Node {
        let echo = handler_fn(|req: String, _conn| async move { Ok::<_, Infallible>(Some(req)) });
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(echo);
        let cluster = Cluster::attach(&server, bus, config).unwrap();
        let mut node = Node {
            server,
            cluster,
            clients: Vec::new(),
        };
        for _ in 0..clients {
            node.add_client().await;
        }
        node
    }

    /// Connects one more client and returns its index.
    pub async fn add_client(&mut self) -> usize {
        let before: Vec<ConnectionId> = self.server.connections().iter().map(|c| c.id()).collect();
        let client = Client::connect(self.server.local_addr()).await.unwrap();
        // A request round-trip: the server has registered the connection
        // and chosen its profile, so pushes reach it.
        let _: String = client.request("hola").await.unwrap();
        let id = self
            .server
            .connections()
            .iter()
            .map(|c| c.id())
            .find(|id| !before.contains(id))
            .expect("the new connection is registered");
        self.clients.push((client, id));
        self.clients.len() - 1
    }

    pub fn id(&self, client: usize) -> ConnectionId {
        self.clients[client].1
    }

    pub fn client(&self, client: usize) -> &Client {
        &self.clients[client].0
    }
}

/// The next push to `client`, within [`WAIT`].
pub async fn next(client: &Client) -> String {
    tokio::time::timeout(WAIT, client.recv::<String>())
        .await
        .expect("a push arrives in time")
        .unwrap()
        .expect("the connection is open")
}

/// Whatever push reaches `client` within `wait`, if any.
pub async fn maybe_next(client: &Client, wait: Duration) -> Option<String> {
    tokio::time::timeout(wait, client.recv::<String>())
        .await
        .ok()
        .map(|push| push.unwrap().expect("the connection is open"))
}

/// Polls `check` every 20 ms until it holds, within [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within {WAIT:?}: {what}"));
}

/// Until every cluster hears every other (so each one's subscription is
/// live and nothing published from now on is missed).
pub async fn settle(nodes: &[&Node]) {
    eventually("every server hears every other", || {
        nodes.iter().all(|n| n.cluster.nodes().len() == nodes.len())
    })
    .await;
}

pub mod recovery;
