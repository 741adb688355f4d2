//! WebSocket listener (feature `ws`), without a browser: a tokio-tungstenite
//! client against `Server::ws`, the page on `GET /`, oversize messages and
//! requests that are not upgrades. (`tests/browser.rs` drives Chromium.)

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::{bounded, eventually};
use enchufe::server::{Config, Profile};
use enchufe::ws::Options;
use enchufe::{handler_fn, Client, Server, ServerHandle};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const PAGE: &str = "<!doctype html><title>enchufe</title>";

/// An echo server on TCP and WebSocket, both on 127.0.0.1:0.
async fn server(config: Config) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .ws("127.0.0.1:0", Options::default().page(PAGE))
        .await
        .unwrap()
        .serve(handler_fn(|msg: String, _conn| async move {
            Ok::<_, Infallible>(Some(format!("echo:{msg}")))
        }))
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_client(server: &ServerHandle) -> Ws {
    let addr = server.ws_addr().unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// The next data message, skipping pings.
async fn next_data(ws: &mut Ws) -> Option<Message> {
    loop {
        match ws.next().await? {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(msg) => return Some(msg),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_websocket_client_is_served_like_a_tcp_one() {
    bounded(async {
        let server = server(Config::default()).await;
        let mut ws = ws_client(&server).await;
        ws.send(Message::binary(&b"hola"[..])).await.unwrap();
        assert_eq!(
            next_data(&mut ws).await,
            Some(Message::binary(&b"echo:hola"[..]))
        );
        // A text message is taken as its UTF-8 bytes.
        ws.send(Message::text("ñandú")).await.unwrap();
        assert_eq!(
            next_data(&mut ws).await,
            Some(Message::binary("echo:ñandú".as_bytes().to_vec()))
        );
        // One registry: a broadcast reaches the WebSocket and TCP clients.
        let tcp = Client::connect(server.local_addr()).await.unwrap();
        eventually(|| server.connection_count() == 2).await;
        assert_eq!(server.broadcast("news").unwrap(), 2);
        assert_eq!(
            next_data(&mut ws).await,
            Some(Message::binary(&b"news"[..]))
        );
        assert_eq!(tcp.recv::<String>().await.unwrap().as_deref(), Some("news"));
        // Closing the WebSocket is a clean close, as a TCP EOF.
        ws.close(None).await.unwrap();
        eventually(|| server.connection_count() == 1).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_multiplexed_profile_over_websocket() {
    bounded(async {
        use enchufe::framing::mux::{Header, Hello, Kind};
        let server = server(Config::default().profile(Profile::Multiplexed)).await;
        let mut ws = ws_client(&server).await;
        // What a browser does: its hello, then a request with a 9-byte header.
        ws.send(Message::binary(
            Hello::new("web").encode().unwrap().to_vec(),
        ))
        .await
        .unwrap();
        let Some(Message::Binary(hello)) = next_data(&mut ws).await else {
            panic!("no hello");
        };
        Hello::decode(&hello).unwrap();
        let request = [
            &Header {
                kind: Kind::Request,
                id: 7,
            }
            .to_bytes()[..],
            b"hi",
        ]
        .concat();
        ws.send(Message::binary(request)).await.unwrap();
        let Some(Message::Binary(reply)) = next_data(&mut ws).await else {
            panic!("no reply");
        };
        let (header, body) = Header::split(reply.as_ref().into()).unwrap();
        assert_eq!(
            (header.kind, header.id, &body[..]),
            (Kind::Response, 7, &b"echo:hi"[..])
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_oversize_message_ends_only_its_connection() {
    bounded(async {
        let server = server(Config::default().max_frame_length(1024)).await;
        let mut ws = ws_client(&server).await;
        ws.send(Message::binary(vec![b'x'; 1025])).await.unwrap();
        // Closed by the server with 1009 (message too big): no reply.
        assert_eq!(close_code(&mut ws).await, Some(1009));
        // A message at the limit is fine on another connection.
        let mut ws = ws_client(&server).await;
        let at_limit = "x".repeat(1024 - "echo:".len());
        ws.send(Message::text(at_limit.clone())).await.unwrap();
        let reply = next_data(&mut ws).await.unwrap();
        assert_eq!(reply.into_data().len(), 1024);
        server.shutdown().await;
    })
    .await;
}

/// The code of the close frame the server sends next (data before it is
/// skipped); `None` if the connection ends without one.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.next().await? {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A client's frame as raw bytes (masked, as a client's must be), for what
/// tokio-tungstenite will not send: broken frames, invalid text, fragments.
fn raw_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "a short frame only");
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![u8::from(fin) << 7 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[tokio::test]
async fn bad_input_gets_a_close_frame_with_its_code() {
    bounded(async {
        let server = server(Config::default()).await;
        let cases: [(Vec<u8>, u16); 3] = [
            (raw_frame(true, 0x1, b"caf\xe9"), 1007), // Latin-1, not UTF-8
            (raw_frame(true, 0x3, b"x"), 1002),       // reserved opcode
            (raw_frame(true, 0x0, b"x"), 1002),       // continuation of nothing
        ];
        for (raw, code) in cases {
            let mut ws = ws_client(&server).await;
            ws.get_mut().write_all(&raw).await.unwrap();
            assert_eq!(close_code(&mut ws).await, Some(code));
        }
        // Each refusal ended only its own connection.
        eventually(|| server.connection_count() == 0).await;
        let mut ws = ws_client(&server).await;
        ws.send(Message::text("still here")).await.unwrap();
        assert_eq!(
            next_data(&mut ws).await,
            Some(Message::binary(&b"echo:still here"[..]))
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_message_over_the_default_limit_is_refused_with_1009() {
    bounded(async {
        let server = server(Config::default()).await;
        let ws = ws_client(&server).await;
        // 9 MiB against the 8 MiB frame limit: the server refuses on the
        // header, while the client is still sending (its send may fail).
        let (mut tx, mut rx) = ws.split();
        let send = tokio::spawn(async move {
            let _ = tx.send(Message::binary(vec![b'x'; 9 << 20])).await;
            tx
        });
        let code = loop {
            match rx.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => break None,
            }
        };
        assert_eq!(code, Some(1009));
        let _ = send.await;
        server.shutdown().await;
    })
    .await;
}

/// Sends the first fragment of a message whose last never comes: the
/// server's deadline closes the connection with 1008 and drops it.
async fn half_message_is_closed_with_1008(server: &ServerHandle) {
    let mut ws = ws_client(server).await;
    ws.get_mut()
        .write_all(&raw_frame(false, 0x2, b"half"))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1008));
    eventually(|| server.connection_count() == 0).await;
}

#[tokio::test]
async fn a_message_left_unfinished_is_closed_with_1008() {
    bounded(async {
        let config = Config::default().frame_timeout(Some(Duration::from_millis(300)));
        let server = server(config).await;
        half_message_is_closed_with_1008(&server).await;
        // A fragmented message that completes in time is one frame.
        let mut ws = ws_client(&server).await;
        let mut raw = raw_frame(false, 0x1, b"ho");
        raw.extend(raw_frame(true, 0x9, b"ping between"));
        raw.extend(raw_frame(true, 0x0, b"la"));
        ws.get_mut().write_all(&raw).await.unwrap();
        assert_eq!(
            next_data(&mut ws).await,
            Some(Message::binary(&b"echo:hola"[..]))
        );
        server.shutdown().await;
    })
    .await;
}

/// The first message is also under the server's first-frame deadline,
/// which is the connection's (not the WebSocket's own message deadline):
/// when it ends the connection, the close still says why.
#[tokio::test]
async fn a_first_message_left_unfinished_is_closed_with_1008_at_the_first_frame_deadline() {
    bounded(async {
        let config = Config::default().first_frame_timeout(Some(Duration::from_millis(300)));
        let server = server(config).await;
        half_message_is_closed_with_1008(&server).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() {
    bounded(async {
        let server = server(Config::default()).await;
        let mut ws = ws_client(&server).await;
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(
            next_data(&mut ws).await,
            Some(Message::binary(&b"echo:hi"[..]))
        );
        let stopping = tokio::spawn(async move { server.shutdown().await });
        assert_eq!(close_code(&mut ws).await, Some(1001));
        stopping.await.unwrap();
    })
    .await;
}

/// Sends `request` to the WebSocket port and returns the whole response.
async fn http(server: &ServerHandle, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(server.ws_addr().unwrap()).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut response = Vec::new();
    // The server closes after answering; a reset after that is fine too.
    let _ = tcp.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn requests_that_are_not_upgrades_get_an_http_error() {
    bounded(async {
        let config = Config::default().handshake_timeout(Duration::from_millis(300));
        let server = server(config).await;
        let page = http(&server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            page.starts_with("HTTP/1.1 200 OK\r\n") && page.ends_with(PAGE),
            "{page}"
        );
        let cases: [(&[u8], &str); 4] = [
            (b"GET /nothing HTTP/1.1\r\n\r\n", "404"),
            (b"POST / HTTP/1.1\r\n\r\n", "400"),
            (b"\0\0\0\x04hola\r\n\r\n", "400"), // a frame client at the WebSocket port
            (
                b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                "400",
            ),
        ];
        for (request, status) in cases {
            let response = http(&server, request).await;
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status} ")),
                "{response}"
            );
        }
        // A head over the limit (8 KiB) is cut short with 431.
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
        assert!(http(&server, long.as_bytes())
            .await
            .starts_with("HTTP/1.1 431 "));
        // A head that never ends is closed at the handshake timeout.
        assert_eq!(http(&server, b"GET / HTTP/1.1\r\n").await, "");
        eventually(|| server.stats().ws_rejected == 6).await;
        // Nothing of this reached the handler or the registry.
        assert_eq!(server.connection_count(), 0);
        server.shutdown().await;
    })
    .await;
}

/// A client that pipelines without pause while it reads: the server's
/// writes block and its reads stop for the byte budget, and every reply must
/// still come. (The lost final flush this once showed, in about one run of
/// two at 200,000 requests in release, is pinned down deterministically by
/// `tests/buffered_io.rs`.)
#[tokio::test]
async fn pipelined_requests_all_get_their_reply() {
    bounded(async {
        use enchufe::framing::mux::{Header, Hello, Kind};
        let server = server(Config::default().profile(Profile::Multiplexed)).await;
        for _ in 0..3 {
            let (mut tx, mut rx) = ws_client(&server).await.split();
            tx.send(Message::binary(Hello::new("").encode().unwrap().to_vec()))
                .await
                .unwrap();
            rx.next().await.unwrap().unwrap();
            let n = 5_000u64;
            let send = async {
                for id in 1..=n {
                    let header = Header {
                        kind: Kind::Request,
                        id,
                    }
                    .to_bytes();
                    let request = [&header[..], &[b'x'; 1000][..]].concat();
                    tx.feed(Message::binary(request)).await.unwrap();
                }
                tx.flush().await.unwrap();
            };
            let recv = async {
                for _ in 0..n {
                    let reply = rx.next().await.unwrap().unwrap();
                    assert_eq!(reply.len(), 9 + "echo:".len() + 1000);
                }
            };
            tokio::join!(send, recv);
        }
        server.shutdown().await;
    })
    .await;
}
