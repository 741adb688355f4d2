//! The client in the multiplexed profile, against scripted servers that speak
//! `docs/PROTOCOL.md` frame by frame: hello exchange, replies by id and out
//! of order, error frames, pushes, cancellation, protocol violations.
//! Run with `cargo test -p enchufe-client --test multiplexed_wire`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use enchufe_client::{Client, Config, Error, ErrorCode, Profile};
use enchufe_framing::mux::{Hello, Kind, Mismatch};
use enchufe_framing::Transport;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

#[path = "../../../tests/common/mux_peer.rs"]
mod mux_peer;
use mux_peer::{prefixed as wire, MuxPeer};

mod support;
use support::{bounded, listen, mux_server};

fn mux() -> Config {
    Config::default().profile(Profile::Multiplexed)
}

#[tokio::test]
async fn connecting_exchanges_hellos_byte_exact_before_the_client_is_returned() {
    bounded(async {
        let (addr, server) = listen(|mut s| async move {
            // The client's hello, byte for byte, with its node id.
            let mut hello = [0u8; 16];
            s.read_exact(&mut hello).await.unwrap();
            assert_eq!(
                hello,
                [0, 0, 0, 12, 0x45, 0x4e, 0x43, 0x48, 1, 0, 5, b'a', b'l', b'i', b'c', b'e']
            );
            s.write_all(&wire(&Hello::new("srv").answering().encode().unwrap()))
                .await
                .unwrap();
            let mut script = MuxPeer::over(s);
            let (id, body) = script.expect(Kind::Request).await;
            assert_eq!((id, body.as_str()), (1, "ping"));
            script.send(Kind::Response, id, b"pong").await;
            script.expect_end().await;
        })
        .await;
        let client = Client::connect_with(addr, mux().node_id("alice"))
            .await
            .unwrap();
        assert_eq!(client.request::<_, String>("ping").await.unwrap(), "pong");
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn handshake_waits_for_the_servers_hello_over_any_stream() {
    bounded(async {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (release, released) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let mut transport = Transport::new(server_io);
            let theirs = transport.recv().await.unwrap().unwrap();
            Hello::decode(&theirs).unwrap();
            // The client must still be waiting: our hello has not been sent.
            release.send(()).unwrap();
            transport
                .send(Hello::new("").answering().encode().unwrap())
                .await
                .unwrap();
            let mut script = MuxPeer(transport);
            let (id, _) = script.expect(Kind::Request).await;
            script.send(Kind::Response, id, b"ok").await;
            script.expect_end().await;
        });
        let handshake = tokio::spawn(Client::handshake_io(client_io, mux()));
        released.await.unwrap();
        let client = handshake.await.unwrap().unwrap();
        assert_eq!(client.request::<_, String>("x").await.unwrap(), "ok");
        assert_eq!(client.peer_addr(), None);
        client.close().await.unwrap();
        server.await.unwrap();

        // TCP: an accepted stream handed over.
        let (addr, server) = mux_server(|mut script| async move {
            let (id, _) = script.expect(Kind::Request).await;
            script.send(Kind::Response, id, b"tcp").await;
            script.expect_end().await;
        })
        .await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let client = Client::handshake(stream, mux()).await.unwrap();
        assert_eq!(client.request::<_, String>("x").await.unwrap(), "tcp");
        assert_eq!(client.peer_addr(), Some(addr));
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_server_of_another_version_is_a_version_mismatch() {
    bounded(async {
        let (addr, server) = listen(|mut s| async move {
            s.write_all(&wire(&[0x45, 0x4e, 0x43, 0x48, 2, 0, 0]))
                .await
                .unwrap();
            // The client read our version and hung up after its own hello.
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, wire(&Hello::new("").encode().unwrap()));
        })
        .await;
        let err = Client::connect_with(addr, mux()).await.unwrap_err();
        assert!(
            matches!(
                err.framing(),
                Some(enchufe::framing::Error::VersionMismatch { ours: 1, theirs: 2 })
            ),
            "{err:?}"
        );
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_first_frame_that_is_not_a_hello_is_a_profile_mismatch() {
    bounded(async {
        let (addr, server) = listen(|mut s| async move {
            s.write_all(&wire(b"HTTP/1.1 400 Bad Request"))
                .await
                .unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        let err = Client::connect_with(addr, mux()).await.unwrap_err();
        assert!(err.mismatch() == Some(Mismatch::NotAHello), "{err:?}");
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_plain_server_that_sends_no_hello_is_a_profile_mismatch_in_time() {
    bounded(async {
        // A plain-profile server sends nothing until it gets a request; the
        // client's hello is not one it answers.
        let (addr, server) = listen(|mut s| async move {
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        let limit = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let err = Client::connect_with(addr, mux().connect_timeout(limit))
            .await
            .unwrap_err();
        assert!(err.mismatch() == Some(Mismatch::NoHello(limit)), "{err:?}");
        assert!(err.is_timeout() && err.is_profile_mismatch());
        assert!(started.elapsed() < Duration::from_secs(5));
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn replies_out_of_order_are_matched_by_id() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            let mut requests = Vec::new();
            for _ in 0..3 {
                requests.push(script.expect(Kind::Request).await);
            }
            let mut ids: Vec<u64> = requests.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            assert_eq!(ids, [1, 2, 3]);
            for (id, body) in requests.iter().rev() {
                script
                    .feed(Kind::Response, *id, format!("re:{body}").as_bytes())
                    .await;
            }
            script.flush().await;
            script.expect_end().await;
        })
        .await;
        let client = Client::connect_with(addr, mux()).await.unwrap();
        let (a, b, c) = tokio::join!(
            client.request::<_, String>("a"),
            client.request::<_, String>("b"),
            client.request::<_, String>("c"),
        );
        assert_eq!(
            (a.unwrap(), b.unwrap(), c.unwrap()),
            ("re:a".into(), "re:b".into(), "re:c".into())
        );
        client.close().await.unwrap();
        assert_eq!(client.recv::<String>().await.unwrap(), None);
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_error_frame_fails_only_its_request_as_remote() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            let (id, _) = script.expect(Kind::Request).await;
            script
                .send(Kind::Error, id, &ErrorCode::Handler.body("boom"))
                .await;
            let (id, _) = script.expect(Kind::Request).await;
            script.send(Kind::Error, id, &[42, b'?']).await;
            let (id, _) = script.expect(Kind::Request).await;
            script.send(Kind::Response, id, b"fine").await;
            script.expect_end().await;
        })
        .await;
        let client = Client::connect_with(addr, mux()).await.unwrap();
        let err = client.request::<_, String>("fail").await.unwrap_err();
        assert!(
            matches!(&err, Error::Remote { code: ErrorCode::Handler, message } if message == "boom"),
            "{err:?}"
        );
        let err = client.request::<_, String>("odd").await.unwrap_err();
        assert!(
            matches!(&err, Error::Remote { code: ErrorCode::Other(42), message } if message == "?"),
            "{err:?}"
        );
        assert_eq!(client.request::<_, String>("ok").await.unwrap(), "fine");
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn pushes_between_replies_never_pass_for_replies() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            let mut requests = HashMap::new();
            for _ in 0..2 {
                let (id, body) = script.expect(Kind::Request).await;
                requests.insert(body, id);
            }
            script.feed(Kind::Push, 0, b"p1").await;
            script.feed(Kind::Response, requests["second"], b"r2").await;
            script.feed(Kind::Push, 0, b"p2").await;
            script.feed(Kind::Push, 0, b"p3").await;
            script.feed(Kind::Response, requests["first"], b"r1").await;
            script.feed(Kind::Push, 0, b"p4").await;
            script.flush().await;
            script.expect_end().await;
            // Dropping the script closes: the client's pushes end there.
        })
        .await;
        let client = Client::connect_with(addr, mux()).await.unwrap();
        let (first, second) = tokio::join!(
            client.request::<_, String>("first"),
            client.request::<_, String>("second"),
        );
        assert_eq!(
            (first.unwrap(), second.unwrap()),
            ("r1".into(), "r2".into())
        );
        assert_eq!(
            client.recv::<String>().await.unwrap().as_deref(),
            Some("p1")
        );
        client.close().await.unwrap();
        let rest: Vec<String> = client
            .pushes::<String>()
            .map(|push| push.unwrap())
            .collect()
            .await;
        assert_eq!(rest, ["p2", "p3", "p4"]);
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_request_is_cancelled_and_its_late_reply_dropped() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            let (slow, body) = script.expect(Kind::Request).await;
            assert_eq!(body, "slow");
            let (cancelled, body) = script.expect(Kind::Cancel).await;
            assert_eq!((cancelled, body.as_str()), (slow, ""));
            // With max_in_flight 1, the next request arriving before the slow
            // one was answered shows its slot was freed by the timeout.
            // Its id is a new one: the late reply to `slow` cannot reach it.
            let (next, body) = script.expect(Kind::Request).await;
            assert_eq!(body, "next");
            assert_ne!(next, slow);
            script.feed(Kind::Response, slow, b"late").await;
            script.feed(Kind::Response, next, b"fresh").await;
            script.flush().await;
            script.expect_end().await;
        })
        .await;
        let client = Client::connect_with(addr, mux().max_in_flight(1))
            .await
            .unwrap();
        let limit = Duration::from_millis(100);
        let err = client
            .request_timeout::<_, String>("slow", limit)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(d) if d == limit), "{err:?}");
        assert_eq!(client.request::<_, String>("next").await.unwrap(), "fresh");
        client.close().await.unwrap();
        // The late reply went nowhere: not to a request, not to recv.
        assert_eq!(client.recv::<String>().await.unwrap(), None);
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn dropping_a_request_future_sends_cancel() {
    bounded(async {
        let (seen, seen_by_test) = oneshot::channel();
        let (addr, server) = mux_server(|mut script| async move {
            let (id, _) = script.expect(Kind::Request).await;
            seen.send(id).unwrap();
            let (cancelled, body) = script.expect(Kind::Cancel).await;
            assert_eq!((cancelled, body.as_str()), (id, ""));
            let (id, _) = script.expect(Kind::Request).await;
            script.send(Kind::Response, id, b"after").await;
            script.expect_end().await;
        })
        .await;
        let client = Client::connect_with(addr, mux().max_in_flight(1))
            .await
            .unwrap();
        let abandoned = client.request::<_, String>("never mind");
        tokio::select! {
            reply = abandoned => panic!("no reply was sent, got {reply:?}"),
            id = seen_by_test => assert_eq!(id.unwrap(), 1),
        }
        // The request future is gone: its slot too (max_in_flight is 1).
        assert_eq!(client.request::<_, String>("next").await.unwrap(), "after");
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_share_one_connection_with_replies_in_reversed_batches() {
    const TASKS: usize = 16;
    const REQUESTS: usize = 200;
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            // Every active task has exactly one request in flight at a time,
            // so waiting for one request per active task never deadlocks and
            // makes each batch as large as it can be; answering it reversed
            // puts nearly every reply out of order.
            let mut answered = [0usize; TASKS];
            let mut batches = 0;
            loop {
                let active = answered.iter().filter(|&&n| n < REQUESTS).count();
                if active == 0 {
                    break;
                }
                let mut batch = Vec::with_capacity(active);
                while batch.len() < active {
                    batch.push(script.expect(Kind::Request).await);
                }
                for (id, body) in batch.iter().rev() {
                    let task: usize = body.split('/').next().unwrap().parse().unwrap();
                    answered[task] += 1;
                    script
                        .feed(Kind::Response, *id, format!("echo:{body}").as_bytes())
                        .await;
                }
                script.flush().await;
                batches += 1;
            }
            assert_eq!(batches, REQUESTS);
            script.expect_end().await;
        })
        .await;
        let client = Client::connect_with(addr, mux()).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for r in 0..REQUESTS {
                    let msg = format!("{t}/{r}");
                    let reply: String = client.request(msg.as_str()).await.unwrap();
                    assert_eq!(reply, format!("echo:{msg}"));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn send_and_notify_write_notify_frames_byte_exact() {
    bounded(async {
        let (addr, server) = listen(|mut s| async move {
            let mut hello = [0u8; 11];
            s.read_exact(&mut hello).await.unwrap();
            assert_eq!(hello, [0, 0, 0, 7, 0x45, 0x4e, 0x43, 0x48, 1, 0, 0]);
            s.write_all(&wire(&Hello::new("").answering().encode().unwrap()))
                .await
                .unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            let mut expected = Vec::new();
            for body in [b"hi", b"yo"] {
                expected.extend_from_slice(&[0, 0, 0, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
                expected.extend_from_slice(body);
            }
            assert_eq!(rest, expected);
        })
        .await;
        let client = Client::connect_with(addr, mux()).await.unwrap();
        client.send("hi").await.unwrap();
        client.notify("yo").await.unwrap();
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_oversize_message_counts_the_header_against_the_limit() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            let (id, body) = script.expect(Kind::Request).await;
            assert_eq!(body.len(), 7);
            script.send(Kind::Response, id, b"ok").await;
            script.expect_end().await;
        })
        .await;
        let client = Client::connect_with(addr, mux().max_frame_length(16))
            .await
            .unwrap();
        let err = client.send("12345678").await.unwrap_err();
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
        // Nothing was sent; the connection is intact.
        assert_eq!(client.request::<_, String>("1234567").await.unwrap(), "ok");
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_protocol_violation_fails_the_pending_request_and_closes() {
    bounded(async {
        use enchufe::framing::mux::Violation;
        let violations: [(&[u8], Violation); 4] = [
            (&[9, 0, 0, 0, 0, 0, 0, 0, 1, b'x'], Violation::UnknownKind),
            (&[2, 0, 0], Violation::Short),
            (
                &[1, 0, 0, 0, 0, 0, 0, 0, 1],
                Violation::ServerSentServerKind(Kind::Request),
            ),
            (
                &[6, 0, 0, 0, 0, 0, 0, 0, 1],
                Violation::ServerSentServerKind(Kind::Cancel),
            ),
        ];
        for (bad, what) in violations {
            let (addr, server) = mux_server(move |mut script| async move {
                script.expect(Kind::Request).await;
                script.0.send(Bytes::from_static(bad)).await.unwrap();
                // The client hangs up at once, without a word more.
                script.expect_end().await;
            })
            .await;
            let client = Client::connect_with(addr, mux()).await.unwrap();
            let err = client.request::<_, String>("x").await.unwrap_err();
            assert!(
                matches!(err.framing(), Some(enchufe::framing::Error::Malformed(enchufe::framing::Malformed::Mux(w))) if *w == what),
                "{err:?}"
            );
            assert!(client.is_closed());
            let err = client.request::<_, String>("y").await.unwrap_err();
            assert!(err.is_bad_input(), "{err:?}");
            let err = client.recv::<String>().await.unwrap_err();
            assert!(err.is_bad_input(), "{err:?}");
            assert_eq!(client.recv::<String>().await.unwrap(), None);
            server.await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "use Client::handshake_io")]
async fn the_sync_constructors_refuse_the_multiplexed_profile() {
    bounded(async {
        let (io, _other) = tokio::io::duplex(64);
        let _ = Client::from_io(io, mux());
    })
    .await;
}

#[tokio::test]
async fn pushes_is_the_unsolicited_stream_in_the_plain_profile_too() {
    bounded(async {
        let (addr, server) = listen(|mut s| async move {
            s.write_all(&wire(b"welcome")).await.unwrap();
            s.write_all(&wire(b"bye")).await.unwrap();
        })
        .await;
        let plain = Config::default().profile(Profile::Plain);
        let client = Client::connect_with(addr, plain).await.unwrap();
        let pushes: Vec<String> = client
            .pushes::<String>()
            .map(|push| push.unwrap())
            .collect()
            .await;
        assert_eq!(pushes, ["welcome", "bye"]);
        server.await.unwrap();
    })
    .await;
}
