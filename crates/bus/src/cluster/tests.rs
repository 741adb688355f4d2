//! What a member skips after its recovery is forgotten with its
//! membership (the map stays bounded by the rooms' members).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use enchufe_client::Client;
use enchufe_server::{handler_fn, ConnectionId, Server, ServerHandle};

use super::shared::lock;
use super::{Cluster, Config, NodeId};
use crate::{Cursor, History, MemoryBus, Recovery, Stamp};

/// A client of `server`, and its connection id there.
async fn connect(server: &ServerHandle) -> (Client, ConnectionId) {
    let before: Vec<ConnectionId> = server.connections().iter().map(|c| c.id()).collect();
    let client = Client::connect(server.local_addr()).await.unwrap();
    // A round trip: the server has registered the connection.
    let _: String = client.request("hola").await.unwrap();
    let id = server
        .connections()
        .iter()
        .map(|c| c.id())
        .find(|id| !before.contains(id))
        .expect("the new connection is registered");
    (client, id)
}

#[tokio::test]
async fn what_a_member_skips_goes_when_it_leaves_the_room_or_closes() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let echo = handler_fn(|req: String, _conn| async move { Ok::<_, Infallible>(Some(req)) });
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(echo);
        let config = Config {
            history: Some(History::default()),
            heartbeat: Duration::from_millis(20),
            ..Config::default()
        };
        let cluster = Cluster::attach(&server, Arc::new(MemoryBus::new()), config).unwrap();
        let entries = || {
            let len = lock(&cluster.inner.recovering).len();
            assert_eq!(len, cluster.inner.recovering_count.load(Ordering::Relaxed));
            len
        };
        // The member has a message this server never heard (from a server
        // that will not speak again): it would be skipped for as long as
        // the member stays.
        let mut cursor = Cursor::new();
        cursor.saw(Stamp {
            node: NodeId(7),
            seq: 5,
        });

        let (_one, one) = connect(&server).await;
        let recovered = cluster.recover("sala", one, &cursor).await.unwrap();
        assert_eq!(recovered, Recovery::Complete { replayed: 0 });
        assert_eq!(entries(), 1);
        assert!(cluster.leave("sala", one));
        assert_eq!(entries(), 0, "gone when it leaves the room");

        let (two, id) = connect(&server).await;
        let recovered = cluster.recover("sala", id, &cursor).await.unwrap();
        assert_eq!(recovered, Recovery::Complete { replayed: 0 });
        assert_eq!(entries(), 1);
        two.close().await.unwrap();
        // The heartbeat lists the room's members, and finds it closed.
        while entries() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.detach().await;
    })
    .await
    .expect("gone when the member closes, and not hung");
}
