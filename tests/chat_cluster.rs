//! The `chat` example's room across three servers on one bus (feature
//! `redis`, for the room's cluster code; the bus here is the in-process
//! one, so nothing needs installing): a line from a member on one server
//! reaches the members on the others once, `/who` lists everyone, `/msg`
//! crosses servers, and a nickname taken on another server is refused.

mod common;

#[path = "../examples/support/room.rs"]
#[allow(dead_code, unreachable_pub)]
mod room;

use std::sync::Arc;
use std::time::Duration;

use common::bounded;
use enchufe::bus::{self, Cluster, MemoryBus};
use enchufe::client::{self, Error as ClientError, Profile};
use enchufe::{Client, Server};

async fn chat_server(bus: Arc<MemoryBus>) -> (enchufe::ServerHandle, Cluster) {
    let config = enchufe::server::Config::default().profile(Profile::Multiplexed);
    let room = room::Room::default();
    let slot = room.cluster.clone();
    let server = Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .serve(room);
    let mut config = bus::Config::default();
    config.heartbeat = Duration::from_millis(50);
    config.presence_ttl = Duration::from_millis(300);
    let cluster = Cluster::attach(&server, bus, config).unwrap();
    slot.set(cluster.clone()).unwrap();
    (server, cluster)
}

async fn join(server: &enchufe::ServerHandle, nick: &str) -> Result<Client, ClientError> {
    let config = client::Config::default().profile(Profile::Multiplexed);
    let client = Client::connect_with(server.local_addr(), config).await?;
    let _: String = client.request(format!("/nick {nick}")).await?;
    Ok(client)
}

async fn next(client: &Client) -> String {
    tokio::time::timeout(Duration::from_secs(10), client.recv::<String>())
        .await
        .expect("a line arrives in time")
        .unwrap()
        .unwrap()
}

/// The next two lines, sorted.
async fn two(client: &Client) -> [String; 2] {
    let mut lines = [next(client).await, next(client).await];
    lines.sort();
    lines
}

/// Asks `/who` until it lists `everyone` (presence is as fresh as the last
/// heartbeat).
async fn who_until(client: &Client, everyone: &str) {
    loop {
        let who: String = client.request("/who").await.unwrap();
        if who == everyone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn three_chat_servers_on_one_bus_are_one_room() {
    bounded(async {
        let bus = Arc::new(MemoryBus::new());
        let (a, _) = chat_server(bus.clone()).await;
        let (b, _) = chat_server(bus.clone()).await;
        let (c, _) = chat_server(bus).await;
        let ana = join(&a, "ana").await.unwrap();
        assert_eq!(next(&ana).await, "* ana joined");
        who_until(&ana, "here: ana").await;
        let bob = join(&b, "bob").await.unwrap();
        assert_eq!(next(&bob).await, "* bob joined");
        assert_eq!(next(&ana).await, "* bob joined");
        let cid = join(&c, "cid").await.unwrap();
        for member in [&ana, &bob, &cid] {
            assert_eq!(next(member).await, "* cid joined");
        }
        who_until(&cid, "here: ana, bob, cid").await;
        who_until(&ana, "here: ana, bob, cid").await;

        // Taken on another server.
        let err = join(&c, "ana").await.unwrap_err();
        assert!(err.to_string().contains("taken") || format!("{err:?}").contains("taken"));

        let _: String = bob.request("hola").await.unwrap();
        let _: String = ana.request("/msg cid secreto").await.unwrap();
        let _: String = cid.request("adiós").await.unwrap();
        // Order is kept per sender, not across senders on other servers.
        assert_eq!(two(&ana).await, ["bob: hola", "cid: adiós"]);
        assert_eq!(two(&cid).await, ["ana (private): secreto", "bob: hola"]);
        assert_eq!(next(&bob).await, "cid: adiós", "bob hears nothing twice");

        bob.close().await.unwrap();
        assert_eq!(next(&ana).await, "* bob left");
        assert_eq!(next(&cid).await, "* bob left");
        who_until(&ana, "here: ana, cid").await;
    })
    .await;
}
