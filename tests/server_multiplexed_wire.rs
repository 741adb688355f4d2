//! The server's multiplexed profile, driven byte by byte through a raw
//! framing transport (no enchufe client involved): hello, ids, out-of-order
//! replies, error replies, panics, cancel, busy, pushes.
//! Run with `cargo test --test server_multiplexed_wire`.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::mux_peer::MuxPeer;
use common::{bounded, eventually, serve};
use enchufe::framing::mux::{ErrorCode, Header, Hello, Kind, Mismatch};
use enchufe::framing::{OutFrame, Transport};
use enchufe::{Connection, Handler, Server, ServerHandle};
use enchufe_server::{BusyPolicy, Config, Disconnect, Profile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// Test handler: "sleep:<ms>:x" answers x after ms; "fail" errs; "panic"
/// panics; "wait" blocks until released (and reports its drop); anything
/// else is echoed.
#[derive(Clone, Default)]
struct Lab {
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    release: Arc<Notify>,
    notified: Option<mpsc::Sender<String>>,
}

struct OnDrop(Arc<AtomicUsize>, Arc<AtomicUsize>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Handler for Lab {
    type Request = String;
    type Response = String;
    type Error = String;

    async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, String> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _guard = OnDrop(self.dropped.clone(), self.running.clone());
        if let Some(rest) = req.strip_prefix("sleep:") {
            let (ms, word) = rest.split_once(':').unwrap();
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            return Ok(Some(word.to_owned()));
        }
        match req.as_str() {
            "fail" => Err("no way".into()),
            "panic" => panic!("kaboom"),
            "wait" => {
                self.release.notified().await;
                Ok(Some("released".into()))
            }
            "quiet" => Ok(None),
            _ => {
                if let Some(tx) = &self.notified {
                    let _ = tx.send(req.clone()).await;
                }
                Ok(Some(format!("echo:{req}")))
            }
        }
    }
}

fn mux() -> Config {
    Config::default().profile(Profile::Multiplexed)
}

#[tokio::test]
async fn the_server_hello_is_byte_exact_and_comes_first() {
    bounded(async {
        let server = serve(Lab::default(), mux()).await;
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut hello = [0u8; 11];
        raw.read_exact(&mut hello).await.unwrap();
        // Flags 0x02: the acceptor's hello, which answers the client's.
        assert_eq!(hello, [0, 0, 0, 7, b'E', b'N', b'C', b'H', 1, 2, 0]);
        // Our hello, then request 1 "ping".
        raw.write_all(&[0, 0, 0, 7, b'E', b'N', b'C', b'H', 1, 0, 0])
            .await
            .unwrap();
        raw.write_all(&[
            0, 0, 0, 13, 1, 0, 0, 0, 0, 0, 0, 0, 1, b'p', b'i', b'n', b'g',
        ])
        .await
        .unwrap();
        let mut reply = [0u8; 4 + 9 + 9];
        raw.read_exact(&mut reply).await.unwrap();
        let mut expected = vec![0, 0, 0, 18, 2, 0, 0, 0, 0, 0, 0, 0, 1];
        expected.extend_from_slice(b"echo:ping");
        assert_eq!(&reply[..], &expected[..]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn replies_go_out_of_order_with_their_ids() {
    bounded(async {
        let server = serve(Lab::default(), mux()).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        // Delay inverse to arrival: the first request finishes last.
        for (id, ms) in [(1, 300), (2, 150), (3, 0)] {
            c.send(Kind::Request, id, &format!("sleep:{ms}:r{id}"))
                .await;
        }
        let mut order = Vec::new();
        for _ in 0..3 {
            let (h, body) = c.recv().await.unwrap();
            assert_eq!(h.kind, Kind::Response);
            assert_eq!(body, format!("r{}", h.id));
            order.push(h.id);
        }
        assert_eq!(order, [3, 2, 1]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn errors_and_panics_become_error_replies_and_the_connection_lives_on() {
    bounded(async {
        let server = serve(Lab::default(), mux()).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Request, 1, "fail").await;
        let (h, body) = c.recv().await.unwrap();
        assert_eq!((h.kind, h.id), (Kind::Error, 1));
        assert_eq!(
            ErrorCode::parse(body.as_bytes()),
            (ErrorCode::Handler, "no way".into())
        );

        c.send(Kind::Request, 2, "panic").await;
        let (h, body) = c.recv().await.unwrap();
        assert_eq!((h.kind, h.id), (Kind::Error, 2));
        assert_eq!(
            ErrorCode::parse(body.as_bytes()),
            (ErrorCode::Panic, "kaboom".into())
        );

        c.send(Kind::Request, 3, "quiet").await;
        let (h, body) = c.recv().await.unwrap();
        assert_eq!((h.kind, h.id), (Kind::Error, 3));
        assert_eq!(ErrorCode::parse(body.as_bytes()).0, ErrorCode::NoReply);

        c.send(Kind::Request, 4, "still alive?").await;
        assert_eq!(c.recv().await.unwrap().1, "echo:still alive?");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_that_does_not_decode_gets_a_bad_request_error() {
    bounded(async {
        let server = serve(Lab::default(), mux()).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        let mut bad = vec![1u8, 0, 0, 0, 0, 0, 0, 0, 9];
        bad.push(0xff);
        c.0.send(Bytes::from(bad)).await.unwrap();
        let (h, body) = c.recv().await.unwrap();
        assert_eq!((h.kind, h.id), (Kind::Error, 9));
        assert_eq!(ErrorCode::parse(body.as_bytes()).0, ErrorCode::BadRequest);
        c.send(Kind::Request, 10, "ok").await;
        assert_eq!(c.recv().await.unwrap().1, "echo:ok");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn cancel_drops_the_handler_future() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), mux()).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Request, 1, "wait").await;
        eventually(|| lab.running.load(Ordering::SeqCst) == 1).await;
        c.send(Kind::Cancel, 1, "").await;
        eventually(|| lab.dropped.load(Ordering::SeqCst) == 1).await;
        // Nothing comes back for id 1; the next request is answered.
        c.send(Kind::Request, 2, "after").await;
        let (h, body) = c.recv().await.unwrap();
        assert_eq!(
            (h.kind, h.id, body.as_str()),
            (Kind::Response, 2, "echo:after")
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn over_max_in_flight_requests_are_refused_as_busy_by_policy() {
    bounded(async {
        let lab = Lab::default();
        let config = mux().max_in_flight(2).busy(BusyPolicy::Refuse);
        let server = serve(lab.clone(), config).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Request, 1, "wait").await;
        c.send(Kind::Request, 2, "wait").await;
        eventually(|| lab.running.load(Ordering::SeqCst) == 2).await;
        c.send(Kind::Request, 3, "x").await;
        let (h, body) = c.recv().await.unwrap();
        assert_eq!((h.kind, h.id), (Kind::Error, 3));
        assert_eq!(ErrorCode::parse(body.as_bytes()).0, ErrorCode::Busy);
        lab.release.notify_waiters();
        let mut ids = vec![c.recv().await.unwrap().0.id, c.recv().await.unwrap().0.id];
        ids.sort();
        assert_eq!(ids, [1, 2]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn over_max_in_flight_requests_wait_by_default() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), mux().max_in_flight(3)).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        for id in 1..=30 {
            c.send(Kind::Request, id, "sleep:5:x").await;
        }
        for _ in 0..30 {
            assert_eq!(c.recv().await.unwrap().0.kind, Kind::Response);
        }
        assert_eq!(
            lab.peak.load(Ordering::SeqCst),
            3,
            "never more than max_in_flight at once"
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn pushes_and_broadcasts_carry_the_push_header() {
    bounded(async {
        let (tx, mut seen) = mpsc::channel(1);
        let lab = Lab {
            notified: Some(tx),
            ..Lab::default()
        };
        let server = serve(lab, mux()).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Notify, 0, "note").await;
        assert_eq!(seen.recv().await.unwrap(), "note");
        // A notify gets no reply; the next frame is the broadcast push.
        assert_eq!(server.broadcast("to all").unwrap(), 1);
        let (h, body) = c.recv().await.unwrap();
        assert_eq!((h.kind, h.id, body.as_str()), (Kind::Push, 0, "to all"));
        let id = server.connections()[0].id();
        server.push(id, "to you").await.unwrap();
        let (h, body) = c.recv().await.unwrap();
        assert_eq!((h.kind, body.as_str()), (Kind::Push, "to you"));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn half_close_gets_every_answer_before_the_server_closes() {
    bounded(async {
        let server = serve(Lab::default(), mux()).await;
        let c = MuxPeer::connect(server.local_addr()).await;
        let (mut reader, mut writer) = c.0.split();
        for id in 1..=5u64 {
            let frame = OutFrame::with_header(
                Header {
                    kind: Kind::Request,
                    id,
                },
                Bytes::from(format!("sleep:{}:{id}", 50 - id * 10)),
            );
            writer.feed(frame).await.unwrap();
        }
        writer.close().await.unwrap();
        let mut ids = Vec::new();
        while let Some(frame) = reader.recv().await.unwrap() {
            ids.push(Header::split(frame).unwrap().0.id);
        }
        ids.sort();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        server.shutdown().await;
    })
    .await;
}

/// Records why connections ended.
struct Why(mpsc::Sender<String>);

impl Handler for Why {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(req))
    }

    async fn on_disconnect(&self, _conn: &Connection, reason: &Disconnect) {
        let _ = self.0.send(reason.to_string()).await;
    }
}

#[tokio::test]
async fn a_plain_client_or_another_version_is_refused_with_a_clear_reason() {
    bounded(async {
        let (tx, mut why) = mpsc::channel(1);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(mux())
            .serve(Why(tx));

        // A plain (course) client: its first frame is a message, not a hello.
        let mut plain = Transport::new(TcpStream::connect(server.local_addr()).await.unwrap());
        plain.send_msg("hola").await.unwrap();
        assert!(why
            .recv()
            .await
            .unwrap()
            .contains("speaks another protocol"));

        // Version 2.
        let mut v2 = Transport::new(TcpStream::connect(server.local_addr()).await.unwrap());
        v2.send(Bytes::from_static(&[b'E', b'N', b'C', b'H', 2, 0, 0]))
            .await
            .unwrap();
        let reason = why.recv().await.unwrap();
        assert!(reason.contains("we speak 1, the peer 2"), "{reason}");
        // It still got our hello first, so it can see the mismatch itself.
        let hello = v2.recv().await.unwrap().unwrap();
        assert_eq!(Hello::decode(&hello).unwrap().version, 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_server_only_kind_from_a_client_closes_the_connection() {
    bounded(async {
        let (tx, mut why) = mpsc::channel(1);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(mux())
            .serve(Why(tx));
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Push, 0, "not yours to send").await;
        let reason = why.recv().await.unwrap();
        assert!(reason.contains("protocol violation"), "{reason}");
        // A failure, not a goodbye: the connection is reset.
        let end = c.0.recv().await;
        assert!(
            matches!(&end, Err(enchufe::framing::Error::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{end:?}"
        );
        server.shutdown().await;
    })
    .await;
}

/// Asks the other end of a peer link a question before answering: the
/// server sends a request of its own on the connection the request came in on.
struct Asker;

impl Handler for Asker {
    type Request = String;
    type Response = String;
    type Error = String;

    async fn handle(&self, req: String, conn: &Connection) -> Result<Option<String>, String> {
        let from = conn.node_id().unwrap_or("?").to_owned();
        match conn.request::<_, String>(format!("why {req}?")).await {
            Ok(answer) => Ok(Some(format!("{from} says {req} because {answer}"))),
            Err(e) => Ok(Some(format!("cannot ask {from}: {e}"))),
        }
    }
}

/// A peer server "s" serving [`Asker`], and a raw TCP connection to it.
async fn asker_peer(keepalive: Duration) -> (ServerHandle, TcpStream) {
    let config = mux()
        .peer(enchufe_server::PeerLinks::default().keepalive(Some(keepalive)))
        .node_id("s");
    let server = serve(Asker, config).await;
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    (server, stream)
}

#[tokio::test]
async fn between_peers_requests_go_both_ways_and_pings_keep_the_link() {
    bounded(async {
        let (server, stream) = asker_peer(Duration::from_millis(20)).await;
        let mut raw = stream;
        // A peer's hello is byte exact: flags 0x01 (peer) | 0x02 (it
        // accepted the connection), then the id.
        let mut hello = [0u8; 12];
        raw.read_exact(&mut hello).await.unwrap();
        assert_eq!(hello, [0, 0, 0, 8, b'E', b'N', b'C', b'H', 1, 3, 1, b's']);
        let mut c = MuxPeer(Transport::new(raw));
        c.0.send(Hello::peer("r").encode().unwrap()).await.unwrap();

        c.send(Kind::Request, 1, "rain").await;
        // The server asks back, with its own id space.
        let (header, body) = c.recv_no_ping().await.unwrap();
        assert_eq!((header.kind, header.id), (Kind::Request, 1));
        assert_eq!(body, "why rain?");
        c.send(Kind::Response, 1, "clouds").await;
        let (header, body) = c.recv_no_ping().await.unwrap();
        assert_eq!((header.kind, header.id), (Kind::Response, 1));
        assert_eq!(body, "r says rain because clouds");

        // An error frame answers the server's request as a typed error.
        c.send(Kind::Request, 2, "snow").await;
        let (header, _) = c.recv_no_ping().await.unwrap();
        let mut error = vec![ErrorCode::Handler.to_byte()];
        error.extend_from_slice(b"no idea");
        c.send(Kind::Error, header.id, &error).await;
        let (_, body) = c.recv_no_ping().await.unwrap();
        assert!(
            body.contains("remote error") && body.contains("no idea"),
            "{body}"
        );

        // Idle, the server pings.
        let (header, body) = c.recv().await.unwrap();
        assert_eq!((header.kind, header.id, body.as_str()), (Kind::Ping, 0, ""));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_is_not_a_peer_gets_no_requests_and_no_pings() {
    bounded(async {
        let (server, stream) = asker_peer(Duration::from_millis(5)).await;
        let mut c = MuxPeer(Transport::new(stream));
        c.0.send(Hello::new("plain").encode().unwrap())
            .await
            .unwrap();
        let hello = Hello::decode(&c.0.recv().await.unwrap().unwrap()).unwrap();
        assert!(hello.peer);
        c.send(Kind::Request, 7, "rain").await;
        // The handler's request fails as unsupported; no ping came before.
        let (header, body) = c.recv().await.unwrap();
        assert_eq!((header.kind, header.id), (Kind::Response, 7));
        assert!(body.contains("not supported"), "{body}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dialing_out_fails_with_typed_errors() {
    bounded(async {
        let server = serve(
            Lab::default(),
            mux().handshake_timeout(Duration::from_millis(200)),
        )
        .await;
        // Nobody listens.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = free.local_addr().unwrap();
        drop(free);
        let err = server.connect(nowhere).await.unwrap_err();
        assert!(
            matches!(&err, enchufe_server::Error::Connect(e) if e.addr() == nowhere.to_string()),
            "{err}"
        );
        // A server pinned to the plain profile closes at our hello.
        let plain = common::echo_server(Config::default().profile(Profile::Plain)).await;
        let err = server.connect(plain.local_addr()).await.unwrap_err();
        assert!(
            matches!(
                err,
                enchufe_server::Error::Framing(enchufe::framing::Error::ProfileMismatch(
                    Mismatch::ClosedOnHello
                ))
            ),
            "{err}"
        );
        assert!(err.is_profile_mismatch());
        // One that echoes bytes unchanged sends our own hello back: told
        // apart from an answer by the acceptor flag.
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        let echoing = tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let err = server.connect(echo_addr).await.unwrap_err();
        assert!(
            matches!(
                err,
                enchufe_server::Error::Framing(enchufe::framing::Error::ProfileMismatch(
                    Mismatch::Echoed
                ))
            ),
            "{err}"
        );
        echoing.await.unwrap();
        // A listener that never says anything.
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = server
            .connect(mute.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, enchufe_server::Error::HandshakeTimeout(_)),
            "{err}"
        );
        assert!(err.is_timeout());
        // A multiplexed one does: the dialed connection is served and counted.
        let other = serve(Lab::default(), mux()).await;
        let conn = server.connect(other.local_addr()).await.unwrap();
        assert!(conn.is_outbound() && !conn.is_peer());
        assert_eq!(conn.node_id(), Some(""));
        assert_eq!(server.connection_count(), 1);
        server.shutdown().await;
        other.shutdown().await;
        plain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_id_is_refused_and_the_first_request_still_gets_its_reply() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), mux()).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Request, 7, "wait").await;
        eventually(|| lab.running.load(Ordering::SeqCst) == 1).await;
        // The same id again, while the first is in flight.
        c.send(Kind::Request, 7, "again").await;
        let (header, body) = c.recv().await.expect("an answer to the duplicate");
        assert_eq!(
            header,
            Header {
                kind: Kind::Error,
                id: 7
            }
        );
        assert_eq!(body.as_bytes()[0], ErrorCode::DuplicateId.to_byte());
        assert_eq!(ErrorCode::from_byte(9), ErrorCode::DuplicateId);
        // The first is untouched and the connection lives on.
        assert_eq!(lab.dropped.load(Ordering::SeqCst), 0);
        lab.release.notify_one();
        assert_eq!(
            c.recv().await,
            Some((
                Header {
                    kind: Kind::Response,
                    id: 7
                },
                "released".to_owned()
            ))
        );
        c.send(Kind::Request, 8, "ping").await;
        assert_eq!(
            c.recv().await,
            Some((
                Header {
                    kind: Kind::Response,
                    id: 8
                },
                "echo:ping".to_owned()
            ))
        );
        assert_eq!(server.connection_count(), 1);
    })
    .await;
}
