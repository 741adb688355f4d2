//! The front door: one listener for frames, HTTP and WebSocket, each
//! connection routed by its first bytes, every protocol under the
//! listener's limits (feature `ws` for the WebSocket door).

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::bounded;
use enchufe::http::{door, handler_fn as http_fn, Request, Response};
use enchufe::server::{Config, Profile};
use enchufe::{handler_fn, Client, Connection, Handler, Server, ServerHandle};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn hello() -> enchufe::http::Door<impl enchufe::http::Handler> {
    door(http_fn(|req: Request| async move {
        Response::text(200, format!("hola, {}\n", req.path()))
    }))
}

/// Frames (an echo), HTTP (`hola, PATH`) and WebSocket on one port.
async fn one_port(config: Config) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .http(hello())
        .web(enchufe::ws::Options::default())
        .serve(handler_fn(|msg: String, _conn| async move {
            Ok::<_, Infallible>(Some(format!("echo:{msg}")))
        }))
}

/// One raw HTTP/1.1 exchange with `Connection: close`: the whole response.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn frames_http_and_websocket_share_one_port() {
    bounded(async {
        let server = one_port(Config::default()).await;
        let addr = server.local_addr();

        // Frames: the multiplexed client and a raw plain frame.
        let client = Client::connect(addr).await.unwrap();
        let reply: String = client.request("hola").await.unwrap();
        assert_eq!(reply, "echo:hola");
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(b"\0\0\0\x02hi").await.unwrap();
        let mut back = [0u8; 11];
        raw.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"\0\0\0\x07echo:hi");

        // HTTP.
        let response = http_get(addr, "/mundo").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hola, /mundo\n"), "{response}");

        // WebSocket: one binary message is one frame's payload.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .unwrap();
        ws.send(Message::binary(b"web".to_vec())).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert_eq!(answer.into_data().as_ref(), b"echo:web");

        let stats = server.stats();
        assert_eq!(stats.http_connections, 1, "{stats:?}");
        server.shutdown().await;
    })
    .await;
}

/// Greets every client before it has said anything.
struct Greeter;

impl Handler for Greeter {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn on_connect(&self, conn: &Connection) {
        let _ = conn.push("bienvenido").await;
    }

    async fn handle(&self, msg: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(msg))
    }
}

#[tokio::test]
async fn a_frame_client_that_waits_for_the_greeting_is_still_served() {
    bounded(async {
        // The course's client reads the server's welcome before it sends:
        // the door waits for a first byte only `detect_timeout`.
        let config = Config::default()
            .profile(Profile::Plain)
            .detect_timeout(Some(Duration::from_millis(200)));
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(config)
            .http(hello())
            .serve(Greeter);
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut greeting = [0u8; 14];
        raw.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"\0\0\0\x0abienvenido");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn http_gets_the_listeners_per_address_cap() {
    bounded(async {
        let config = Config::default().max_connections_per_ip(Some(2));
        let server = one_port(config).await;
        let addr = server.local_addr();
        // Two kept-alive HTTP connections hold the address's two places.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut answer = [0u8; 12];
            tcp.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"HTTP/1.1 200");
            held.push(tcp);
        }
        assert_eq!(server.stats().http_connections, 2);
        // A third is closed at once, without a byte.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("closed at once, not left waiting")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(server.stats().refused_per_address >= 1);
        drop(held);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_http_connection_that_sends_nothing_is_refused_at_the_head_deadline() {
    bounded(async {
        let config = enchufe::http::Config::default().head_timeout(Duration::from_millis(300));
        let listener = enchufe::http::Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(config);
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn({
            let stop = stop.clone();
            async move {
                listener
                    .run(
                        http_fn(|_req: Request| async { Response::text(200, "ok\n") }),
                        stop.cancelled_owned(),
                    )
                    .await
            }
        });
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(10), idle.read_to_string(&mut response))
            .await
            .expect("an idle connection is not kept")
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        // And an ordinary request is still answered.
        assert!(http_get(addr, "/").await.starts_with("HTTP/1.1 200"));
        stop.cancel();
        running.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_first_head_not_whole_in_time_is_answered_408_at_the_front_door() {
    bounded(async {
        // With both doors, the front door reads the head itself to tell an
        // upgrade from a request: one that never ends is answered as the
        // HTTP door would answer it.
        let config = Config::default().handshake_timeout(Duration::from_millis(300));
        let server = one_port(config).await;
        let mut slow = TcpStream::connect(server.local_addr()).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(10), slow.read_to_string(&mut response))
            .await
            .expect("answered, not left open")
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        server.shutdown().await;
    })
    .await;
}

/// The doors are the listener's, whatever it listens on: on a Unix socket,
/// which cannot be peeked, the first byte is read and given back.
#[cfg(unix)]
#[tokio::test]
async fn the_doors_open_on_a_unix_socket_too() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("door.sock");
        let server = Server::bind_unix(&path)
            .unwrap()
            .http(hello())
            .serve(handler_fn(|msg: String, _conn| async move {
                Ok::<_, Infallible>(Some(format!("echo:{msg}")))
            }));
        let mut unix = tokio::net::UnixStream::connect(&path).await.unwrap();
        unix.write_all(b"GET /unix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        unix.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hola, /unix\n"), "{response}");
        let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
        raw.write_all(b"\0\0\0\x02hi").await.unwrap();
        let mut back = [0u8; 11];
        raw.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"\0\0\0\x07echo:hi");
        server.shutdown().await;
    })
    .await;
}
