//! A peer that does not speak length-prefixed frames gets an error that says
//! so, on both ends: an enchufe `Client` pointed at an HTTP or SSH server,
//! and an HTTP request sent to an enchufe `Server`. Run with
//! `cargo test --test wrong_protocol`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use common::{bounded, eventually};
use enchufe::framing::Foreign;
use enchufe::server::Disconnect;
use enchufe::{Client, Connection, Handler, Profile, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A raw TCP server that accepts one connection, writes `banner` at once
/// (as SSH servers do) or after the first bytes arrive (as HTTP servers
/// answer a request they cannot parse), and keeps the connection open.
async fn raw_server(banner: &'static [u8], wait_for_request: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        if wait_for_request {
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf).await;
        }
        stream.write_all(banner).await.unwrap();
        // Held open: the client must fail on what it read, not on EOF.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    addr
}

#[tokio::test]
async fn client_at_an_http_server_says_the_server_is_not_speaking_frames() {
    bounded(async {
        let addr = raw_server(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            true,
        )
        .await;
        // The default (multiplexed) client reads the server's first bytes
        // for its hello: it is told at connect.
        let err = Client::connect(addr).await.unwrap_err();
        assert!(err.is_not_frames() && err.is_frame_too_large(), "{err:?}");
        assert!(
            matches!(
                &err,
                enchufe::client::Error::Framing(e) if matches!(
                    **e,
                    enchufe::framing::Error::NotFrames {
                        looks_like: Foreign::HttpResponse,
                        header: [b'H', b'T', b'T', b'P'],
                        ..
                    }
                )
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("not speaking length-prefixed frames")
                && text.contains("\"HTTP\"")
                && text.contains("an HTTP response"),
            "{text}"
        );
        // The message ends with what to do, and a program can ask what the
        // server speaks to give advice of its own.
        assert!(
            text.ends_with("that address serves HTTP, not frames: check the port"),
            "{text}"
        );
        assert_eq!(err.looks_like(), Some(Foreign::HttpResponse));
        // A plain client connects at once and learns at its first request;
        // every later call gets the same answer.
        let addr = raw_server(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            true,
        )
        .await;
        let plain = enchufe::client::Config::default().profile(Profile::Plain);
        let client = Client::connect_with(addr, plain).await.unwrap();
        let err = client.request::<_, String>("hola").await.unwrap_err();
        assert!(err.is_not_frames(), "{err:?}");
        let again = client.request::<_, String>("otra").await.unwrap_err();
        assert!(again.is_not_frames(), "{again:?}");
    })
    .await;
}

#[tokio::test]
async fn client_at_an_ssh_server_says_it_looks_like_ssh() {
    bounded(async {
        let addr = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n", false).await;
        // The default (multiplexed) client reads the server's first bytes
        // for its hello: it is told at connect.
        let err = Client::connect(addr).await.unwrap_err();
        assert!(
            matches!(
                &err,
                enchufe::client::Error::Framing(e) if matches!(
                    **e,
                    enchufe::framing::Error::NotFrames {
                        looks_like: Foreign::Ssh,
                        ..
                    }
                )
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("an SSH banner"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn multiplexed_client_at_an_http_server_fails_to_connect_saying_so() {
    bounded(async {
        let addr = raw_server(b"HTTP/1.1 400 Bad Request\r\n\r\n", true).await;
        let config = enchufe::client::Config::default().profile(Profile::Multiplexed);
        let err = Client::connect_with(addr, config).await.unwrap_err();
        assert!(err.is_not_frames(), "{err:?}");
    })
    .await;
}

/// Echoes, and reports every connection's end.
struct Reporting(mpsc::Sender<String>, mpsc::Sender<bool>);

impl Handler for Reporting {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(req))
    }

    async fn on_disconnect(&self, _conn: &Connection, reason: &Disconnect) {
        let not_frames = matches!(reason, Disconnect::Error(e) if e.is_not_frames());
        let _ = self.0.send(reason.to_string()).await;
        let _ = self.1.send(not_frames).await;
    }
}

#[tokio::test]
async fn server_sent_an_http_request_says_the_client_is_not_speaking_frames() {
    bounded(async {
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let (reasons, mut reason_rx) = mpsc::channel(4);
            let (flags, mut flag_rx) = mpsc::channel(4);
            let server = Server::bind("127.0.0.1:0")
                .await
                .unwrap()
                .with_config(enchufe::server::Config::default().profile(profile))
                .serve(Reporting(reasons, flags));

            let mut browser = TcpStream::connect(server.local_addr()).await.unwrap();
            browser
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
                .await
                .unwrap();
            // The server hangs up on it.
            let mut rest = Vec::new();
            let _ = browser.read_to_end(&mut rest).await;

            let reason = reason_rx.recv().await.unwrap();
            assert!(flag_rx.recv().await.unwrap(), "{profile:?}: {reason}");
            assert!(
                reason.contains("not speaking length-prefixed frames")
                    && reason.contains("\"GET \"")
                    && reason.contains("an HTTP request"),
                "{profile:?}: {reason}"
            );
            eventually(|| server.stats().not_frames == 1).await;

            // The server goes on serving clients that do speak frames.
            let config = enchufe::client::Config::default().profile(profile);
            let client = Client::connect_with(server.local_addr(), config)
                .await
                .unwrap();
            let reply: String = client.request("hola").await.unwrap();
            assert_eq!(reply, "hola");
            drop(client);
            assert_eq!(server.stats().not_frames, 1);
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_oversize_binary_header_is_still_just_too_large() {
    bounded(async {
        let addr = raw_server(&[0xff, 0x00, 0x00, 0x01], false).await;
        // The default (multiplexed) client reads the server's first bytes
        // for its hello: it is told at connect.
        let err = Client::connect(addr).await.unwrap_err();
        assert!(err.is_frame_too_large() && !err.is_not_frames(), "{err:?}");
    })
    .await;
}
