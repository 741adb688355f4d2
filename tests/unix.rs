//! The same server and client over a Unix domain socket: the connection
//! driver is generic over the I/O, so nothing but the listener and the dial
//! differ from TCP.
#![cfg(unix)]

mod common;

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use common::bounded;
use enchufe::client::{self, Error};
use enchufe::server::{self, Profile};
use enchufe::{handler_fn, Client, Connection, Handler, Server};

/// A fresh socket path for one test, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(name: &str) -> SocketPath {
        let dir = std::env::temp_dir().join(format!("enchufe-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Greets on connect, answers `echo:<msg>`.
struct Greeter;

impl Handler for Greeter {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn on_connect(&self, conn: &Connection) {
        let _ = conn.push("welcome").await;
    }

    async fn handle(&self, msg: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(format!("echo:{msg}")))
    }
}

#[tokio::test]
async fn plain_profile_round_trip_push_and_half_close_over_a_unix_socket() {
    bounded(async {
        let path = SocketPath::new("plain");
        let server = Server::bind_unix(&path.0).unwrap().serve(Greeter);
        let plain = client::Config::default().profile(Profile::Plain);
        let client = Client::connect_unix(&path.0, plain).await.unwrap();
        assert_eq!(client.peer_addr(), None);
        assert_eq!(
            client.recv::<String>().await.unwrap().as_deref(),
            Some("welcome")
        );
        let reply: String = client.request("hola").await.unwrap();
        assert_eq!(reply, "echo:hola");
        client.send("adios").await.unwrap();
        client.close().await.unwrap();
        // The reply to the last message still arrives after the half-close.
        assert_eq!(
            client.recv::<String>().await.unwrap().as_deref(),
            Some("echo:adios")
        );
        assert_eq!(client.recv::<String>().await.unwrap(), None);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn multiplexed_profile_many_requests_in_flight_over_a_unix_socket() {
    bounded(async {
        let path = SocketPath::new("mux");
        let server = Server::bind_unix(&path.0)
            .unwrap()
            .with_config(server::Config::default().profile(Profile::Multiplexed))
            .serve(Greeter);
        let client = Client::connect_unix(
            &path.0,
            client::Config::default().profile(Profile::Multiplexed),
        )
        .await
        .unwrap();
        let replies = futures::future::join_all((0..200).map(|i| {
            let client = client.clone();
            async move { client.request::<_, String>(format!("{i}")).await }
        }))
        .await;
        for (i, reply) in replies.into_iter().enumerate() {
            assert_eq!(reply.unwrap(), format!("echo:{i}"));
        }
        assert_eq!(
            client.recv::<String>().await.unwrap().as_deref(),
            Some("welcome")
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn large_frames_cross_a_unix_socket_intact() {
    bounded(async {
        let path = SocketPath::new("large");
        let limit = 4 << 20;
        let server = Server::bind_unix(&path.0)
            .unwrap()
            .with_config(server::Config::default().max_frame_length(limit))
            .serve(handler_fn(|body: Bytes, _conn| async move {
                Ok::<_, Infallible>(Some(body))
            }));
        // Plain: a payload of exactly the limit has no header to make room for.
        let config = client::Config::default()
            .profile(Profile::Plain)
            .max_frame_length(limit);
        let client = Client::connect_unix(&path.0, config).await.unwrap();
        for len in [0, 1, 65_535, 65_536, 1 << 20, limit] {
            let body = Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
            let back: Bytes = client.request(body.clone()).await.unwrap();
            assert!(back == body, "{len} bytes came back different");
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn connecting_to_a_missing_socket_is_a_typed_error() {
    bounded(async {
        let path = SocketPath::new("nobody");
        let err = Client::connect_unix(&path.0, client::Config::default())
            .await
            .unwrap_err();
        match err {
            Error::ConnectUnix { path: p, source } => {
                assert_eq!(p, path.0);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected ConnectUnix, got {other:?}"),
        }
        // Binding over an existing socket file is refused, not clobbered.
        let _server = Server::bind_unix(&path.0).unwrap();
        assert!(matches!(
            Server::bind_unix(&path.0),
            Err(enchufe::server::Error::Bind(e)) if e.addr() == path.0.display().to_string()
        ));
    })
    .await;
}

#[tokio::test]
async fn a_reconnecting_client_finds_a_restarted_server_on_the_same_path() {
    bounded(async {
        let path = SocketPath::new("restart");
        // Multiplexed: the new connection's greeting must not pass for a
        // reply (in the plain profile it would).
        let mux = || server::Config::default().profile(Profile::Multiplexed);
        let server = Server::bind_unix(&path.0)
            .unwrap()
            .with_config(mux())
            .serve(Greeter);
        let config = client::Config::default()
            .profile(Profile::Multiplexed)
            .reconnect(
                client::Reconnect::default().backoff(
                    client::Backoff::default()
                        .initial(std::time::Duration::from_millis(10))
                        .max_delay(std::time::Duration::from_millis(50)),
                ),
            );
        let client = Client::connect_unix(&path.0, config).await.unwrap();
        let _greeting: Option<String> = client.recv().await.unwrap();
        assert_eq!(client.request::<_, String>("1").await.unwrap(), "echo:1");
        let mut events = client.events();
        server.shutdown().await;
        // Requests sent before the client sees the drop would fail (never
        // resent); wait until it has.
        loop {
            if let client::Event::Disconnected { .. } = events.recv().await.unwrap() {
                break;
            }
        }
        std::fs::remove_file(&path.0).unwrap();
        let server = Server::bind_unix(&path.0)
            .unwrap()
            .with_config(mux())
            .serve(Greeter);
        // The default WhileDown waits for the next link.
        assert_eq!(client.request::<_, String>("2").await.unwrap(), "echo:2");
        assert!(client.is_connected());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_multi_client_mixes_unix_and_tcp_servers() {
    bounded(async {
        let (a, b) = (SocketPath::new("multi-a"), SocketPath::new("multi-b"));
        let mux = || server::Config::default().profile(Profile::Multiplexed);
        let sa = Server::bind_unix(&a.0)
            .unwrap()
            .with_config(mux())
            .serve(Greeter);
        let sb = Server::bind_unix(&b.0)
            .unwrap()
            .with_config(mux())
            .serve(Greeter);
        let sc = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(mux())
            .serve(Greeter);
        let multi =
            enchufe::MultiClient::new(client::Config::default().profile(Profile::Multiplexed));
        multi
            .add("a", format!("unix:{}", a.0.display()).as_str())
            .await
            .unwrap();
        multi
            .add(
                "b",
                format!("{}{}", client::UNIX_PREFIX, b.0.display()).as_str(),
            )
            .await
            .unwrap();
        multi.add("c", sc.local_addr()).await.unwrap();
        for key in ["a", "b", "c"] {
            let reply: String = multi.request(&key, key).await.unwrap();
            assert_eq!(reply, format!("echo:{key}"));
        }
        assert_eq!(multi.broadcast("all").await.unwrap(), 3);
        for server in [sa, sb, sc] {
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn two_peers_link_over_unix_sockets() {
    bounded(async {
        let (pa, pb) = (SocketPath::new("peer-a"), SocketPath::new("peer-b"));
        let echo = || {
            handler_fn(|msg: String, conn: Connection| async move {
                Ok::<_, Infallible>(Some(format!("{}:{msg}", conn.node_id().unwrap_or("?"))))
            })
        };
        let a = enchufe::Peer::bind_unix(&pa.0, echo(), enchufe::peer::Config::new("a")).unwrap();
        let b = enchufe::Peer::bind_unix(&pb.0, echo(), enchufe::peer::Config::new("b")).unwrap();
        let id = a
            .connect(format!("{}{}", enchufe::peer::UNIX_PREFIX, pb.0.display()))
            .await
            .unwrap();
        assert_eq!(id, "b");
        b.wait_for("a").await;
        // Requests both ways on the one link; each handler sees who asked.
        assert_eq!(a.request::<_, String>("b", "hola").await.unwrap(), "a:hola");
        assert_eq!(b.request::<_, String>("a", "hey").await.unwrap(), "b:hey");
        assert_eq!(
            (a.peers(), b.peers()),
            (vec!["b".to_owned()], vec!["a".to_owned()])
        );
        a.close().await;
        b.close().await;
    })
    .await;
}
