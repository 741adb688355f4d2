//! The client: typed errors for every way a connection fails, replies vs
//! unsolicited messages, half-close. Run with `cargo test --test client`.
//! Most of these are the plain profile's client against raw scripted
//! servers, so they pin `Profile::Plain` (the default is multiplexed).

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::{bounded, echo_server, eventually};
use enchufe::{handler_fn, Client, Json, Profile, Server};
use enchufe_client::{Config, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

/// The plain profile, pinned: what these tests are about.
fn plain() -> Config {
    Config::default().profile(Profile::Plain)
}

/// A raw server that accepts one connection and runs `script` on it.
async fn raw_server<F, Fut>(script: F) -> std::net::SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await;
    });
    addr
}

#[tokio::test]
async fn connecting_where_nothing_listens_is_refused() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = Client::connect(addr).await.unwrap_err();
        assert!(
            matches!(err, Error::Refused { addr: a } if a == addr),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn connecting_to_a_full_backlog_times_out() {
    bounded(async {
        // A listener with a backlog of 1 that never accepts: once its queue is
        // full the kernel drops further SYNs, so connecting hangs.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
            {
                fillers.push(s);
            }
        }
        let config = Config::default().connect_timeout(Duration::from_millis(300));
        let err = Client::connect_with(addr, config).await.unwrap_err();
        assert!(
            matches!(err, Error::ConnectTimeout { after, .. } if after == Duration::from_millis(300)),
            "{err:?}"
        );
        drop(listener);
    })
    .await;
}

#[tokio::test]
async fn an_address_without_a_port_is_a_resolve_error() {
    bounded(async {
        let err = Client::connect("127.0.0.1").await.unwrap_err();
        assert!(matches!(err, Error::Resolve { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn a_request_without_reply_times_out() {
    bounded(async {
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            |_msg: String, _conn| async move { Ok::<_, Infallible>(None::<String>) },
        ));
        let client = Client::connect_with(server.local_addr(), plain())
            .await
            .unwrap();
        let err = client
            .request_timeout::<_, String>("hello?", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(d) if d == Duration::from_millis(100)));
        assert!(err.is_timeout() && !err.is_closed());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_server_closing_fails_the_pending_request_as_closed_by_peer() {
    bounded(async {
        let addr = raw_server(|mut s| async move {
            // Read the whole request ("hi"), then hang up without answering.
            // (Closing with unread bytes would be a reset, not a clean close.)
            let mut request = [0u8; 6];
            s.read_exact(&mut request).await.unwrap();
        })
        .await;
        let client = Client::connect_with(addr, plain()).await.unwrap();
        let err = client.request::<_, String>("hi").await.unwrap_err();
        assert!(matches!(err, Error::ClosedByPeer), "{err:?}");
        assert!(err.is_closed() && !err.is_timeout());
        assert!(client.is_closed());
        let err = client.send("more").await.unwrap_err();
        assert!(matches!(err, Error::ClosedByPeer), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn an_oversize_frame_from_the_server_is_a_typed_error() {
    bounded(async {
        let addr = raw_server(|mut s| async move {
            s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        })
        .await;
        let client = Client::connect_with(addr, plain()).await.unwrap();
        let err = client.recv::<String>().await.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Framing(e) if matches!(
                    **e,
                    enchufe_framing::Error::FrameTooLarge { declared: 0xffff_ffff, limit: 8_388_608 }
                )
            ),
            "{err:?}"
        );
        assert_eq!(client.recv::<String>().await.unwrap(), None);
        let err = client.request::<_, String>("x").await.unwrap_err();
        assert!(err.is_frame_too_large(), "{err:?}");
        assert!(err.is_frame_too_large());
    })
    .await;
}

#[tokio::test]
async fn eof_inside_a_frame_is_unexpected_eof() {
    bounded(async {
        let addr = raw_server(|mut s| async move {
            s.write_all(&[0, 0, 0, 5, b'h', b'e']).await.unwrap();
        })
        .await;
        let client = Client::connect_with(addr, plain()).await.unwrap();
        let err = client.recv::<String>().await.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Framing(e) if matches!(
                    **e,
                    enchufe_framing::Error::UnexpectedEof { expected: 9, received: 6 }
                )
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_message_that_does_not_decode_does_not_end_the_connection() {
    bounded(async {
        let addr = raw_server(|mut s| async move {
            s.write_all(&[0, 0, 0, 1, 0xff]).await.unwrap();
            s.write_all(&[0, 0, 0, 7]).await.unwrap();
            s.write_all(br#"[1,2,3]"#).await.unwrap();
            s.write_all(&[0, 0, 0, 2, b'o', b'k']).await.unwrap();
        })
        .await;
        let client = Client::connect_with(addr, plain()).await.unwrap();
        let err = client.recv::<String>().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Decode(enchufe::framing::Error::InvalidUtf8 { valid_up_to: 0 })
            ),
            "{err:?}"
        );
        let err = client.recv::<Json<String>>().await.unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        assert_eq!(
            client.recv::<String>().await.unwrap().as_deref(),
            Some("ok")
        );
        assert_eq!(client.recv::<String>().await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn an_oversize_message_is_refused_before_anything_is_sent() {
    bounded(async {
        let server = echo_server(Default::default()).await;
        let config = plain().max_frame_length(16);
        let client = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        let err = client.send("x".repeat(17)).await.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Framing(e) if matches!(
                    **e,
                    enchufe_framing::Error::TooLargeToSend { len: 17, limit: 16 }
                )
            ),
            "{err:?}"
        );
        // The connection is intact.
        assert_eq!(
            client.request::<_, String>("small").await.unwrap(),
            "echo:small"
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn half_close_still_delivers_what_the_server_sends_afterwards() {
    bounded(async {
        let release = std::sync::Arc::new(Notify::new());
        let gate = release.clone();
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            move |msg: String, _conn| {
                let gate = gate.clone();
                async move {
                    if msg == "last" {
                        // Answer only once the client has half-closed.
                        gate.notified().await;
                    }
                    Ok::<_, Infallible>(Some(format!("echo:{msg}")))
                }
            },
        ));
        let client = Client::connect_with(server.local_addr(), plain())
            .await
            .unwrap();
        for msg in ["one", "two", "last"] {
            client.send(msg).await.unwrap();
        }
        client.close().await.unwrap();
        assert!(matches!(client.send("after").await, Err(Error::Closed)));
        release.notify_one();
        let mut got = Vec::new();
        while let Some(msg) = client.recv::<String>().await.unwrap() {
            got.push(msg);
        }
        assert_eq!(got, ["echo:one", "echo:two", "echo:last"]);
        // The server has closed its side too by now: still `Closed`, as
        // the docs of close() promise (it was `ClosedByPeer`).
        let after = client.send("after").await.unwrap_err();
        assert!(matches!(after, Error::Closed), "{after:?}");
        let after = client.request::<_, String>("after").await.unwrap_err();
        assert!(matches!(after, Error::Closed), "{after:?}");
        client.close().await.unwrap(); // twice is harmless
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_greeting_is_unsolicited_and_replies_are_not() {
    bounded(async {
        let addr = raw_server(|mut s| async move {
            s.write_all(b"\x00\x00\x00\x05hello").await.unwrap();
            let mut frame = [0u8; 6];
            s.read_exact(&mut frame).await.unwrap();
            assert_eq!(&frame, b"\x00\x00\x00\x02hi");
            s.write_all(b"\x00\x00\x00\x05reply").await.unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        })
        .await;
        let client = Client::connect_with(addr, plain()).await.unwrap();
        assert_eq!(
            client.recv::<String>().await.unwrap().as_deref(),
            Some("hello")
        );
        assert_eq!(client.request::<_, String>("hi").await.unwrap(), "reply");
        client.close().await.unwrap();
        assert_eq!(client.recv::<String>().await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_connection_and_each_request_gets_its_own_reply() {
    bounded(async {
        let server = echo_server(Default::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..16 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for r in 0..100 {
                    let msg = format!("{t}/{r}");
                    let reply: String = client.request(msg.as_str()).await.unwrap();
                    assert_eq!(reply, format!("echo:{msg}"));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(server.connection_count(), 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    bounded(async {
        let server = echo_server(Default::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let _: String = client.request("x").await.unwrap();
        assert_eq!(server.connection_count(), 1);
        drop(client);
        eventually(|| server.connection_count() == 0).await;
        server.shutdown().await;
    })
    .await;
}
