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
        let client = Client::connect_unix(&path.0, client::Config::default())
            .await
            .unwrap();
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
        let client =
            Client::connect_unix(&path.0, client::Config::default().max_frame_length(limit))
                .await
                .unwrap();
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
            Err(enchufe::server::Error::Bind { .. })
        ));
    })
    .await;
}
