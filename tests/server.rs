//! The server: many clients, ordering, pushes, limits, failures, shutdown.
//! Run with `cargo test --test server`.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::log::Log;
use common::{bounded, echo_server, eventually};
use enchufe::{handler_fn, Client, Connection, Handler, Server};
use enchufe_server::{Config, Disconnect, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// The client's plain profile, for tests of what the plain wire does (a
/// failing handler closes the connection; connecting does not wait for a
/// hello). The server's default profile serves it as plain.
fn plain() -> enchufe_client::Config {
    enchufe_client::Config::default().profile(enchufe::Profile::Plain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_each_make_hundred_requests_with_every_reply_correct() {
    bounded(async {
        let server = echo_server(Config::default()).await;
        let addr = server.local_addr();
        let mut tasks = Vec::new();
        for c in 0..100 {
            tasks.push(tokio::spawn(async move {
                let client = Client::connect(addr).await.expect("connect");
                for r in 0..100 {
                    let msg = format!("client {c} request {r}");
                    let reply: String = client.request(msg.as_str()).await.expect("reply");
                    assert_eq!(reply, format!("echo:{msg}"));
                }
                client.close().await.expect("close");
            }));
        }
        for task in tasks {
            task.await.expect("client task");
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn pipelined_requests_get_replies_in_request_order() {
    bounded(async {
        // Early requests are slowest: replies must still come back in order.
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            |n: String, _conn| async move {
                let n: u64 = n.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(20u64.saturating_sub(n))).await;
                Ok::<_, Infallible>(Some(n.to_string()))
            },
        ));
        let client = Client::connect(server.local_addr()).await.unwrap();
        let replies =
            futures::future::join_all((0..20).map(|n| client.request::<_, String>(n.to_string())))
                .await;
        let replies: Vec<String> = replies.into_iter().map(Result::unwrap).collect();
        let expected: Vec<String> = (0..20).map(|n| n.to_string()).collect();
        assert_eq!(replies, expected);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn server_works_over_ipv6() {
    bounded(async {
        let server = Server::bind("[::1]:0")
            .await
            .expect("bind ::1")
            .serve(handler_fn(|msg: String, conn: Connection| async move {
                Ok::<_, Infallible>(Some(format!("{msg} from {}", conn.peer_addr().ip())))
            }));
        assert!(server.local_addr().is_ipv6());
        let client = Client::connect(server.local_addr()).await.unwrap();
        let reply: String = client.request("hola").await.unwrap();
        assert_eq!(reply, "hola from ::1");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_push_reaches_only_the_client_it_is_sent_to() {
    bounded(async {
        let (ids_tx, mut ids) = mpsc::channel(4);
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            move |msg: String, conn: Connection| {
                let ids_tx = ids_tx.clone();
                async move {
                    ids_tx.send((msg, conn.id())).await.ok();
                    Ok::<_, Infallible>(None::<String>)
                }
            },
        ));
        let alice = Client::connect(server.local_addr()).await.unwrap();
        let bob = Client::connect(server.local_addr()).await.unwrap();
        alice.send("alice").await.unwrap();
        bob.send("bob").await.unwrap();
        let mut by_name = std::collections::HashMap::new();
        for _ in 0..2 {
            let (name, id) = ids.recv().await.unwrap();
            by_name.insert(name, id);
        }
        server.push(by_name["bob"], "only for bob").await.unwrap();
        assert_eq!(
            bob.recv::<String>().await.unwrap().as_deref(),
            Some("only for bob")
        );

        // Alice got nothing: after the server closes, her stream just ends.
        server.shutdown().await;
        assert_eq!(alice.recv::<String>().await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn broadcast_reaches_every_connection_once() {
    bounded(async {
        let server = echo_server(Config::default()).await;
        let mut clients = Vec::new();
        for _ in 0..20 {
            let client = Client::connect(server.local_addr()).await.unwrap();
            // A request proves the connection is registered before we broadcast.
            let _: String = client.request("hi").await.unwrap();
            clients.push(client);
        }
        assert_eq!(server.connection_count(), 20);
        assert_eq!(server.broadcast("news").unwrap(), 20);
        for client in &clients {
            assert_eq!(
                client.recv::<String>().await.unwrap().as_deref(),
                Some("news")
            );
        }
        server.shutdown().await;
        for client in &clients {
            assert_eq!(client.recv::<String>().await.unwrap(), None, "exactly once");
        }
    })
    .await;
}

/// Counts handlers running and holds them until released.
struct Gate {
    running: AtomicUsize,
    release: Notify,
}

struct Slow(Arc<Gate>);

impl Handler for Slow {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        let released = self.0.release.notified();
        self.0.running.fetch_add(1, Ordering::SeqCst);
        released.await;
        Ok(Some(format!("done:{req}")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish_and_answers_them_all() {
    bounded(async {
        let gate = Arc::new(Gate {
            running: AtomicUsize::new(0),
            release: Notify::new(),
        });
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .serve(Slow(gate.clone()));
        let mut waiting = Vec::new();
        for i in 0..10 {
            let client = Client::connect(server.local_addr()).await.unwrap();
            waiting.push(tokio::spawn(async move {
                let reply: String = client.request(format!("{i}")).await.expect("answered");
                assert_eq!(reply, format!("done:{i}"));
                // After the reply, the server closes the connection.
                assert_eq!(client.recv::<String>().await.expect("clean close"), None);
            }));
        }
        eventually(|| gate.running.load(Ordering::SeqCst) == 10).await;

        let shutdown = tokio::spawn({
            let server = server.clone();
            async move { server.shutdown().await }
        });
        eventually(|| server.is_shutting_down()).await;
        // New connections are no longer served.
        let late = Client::connect(server.local_addr()).await;
        if let Ok(late) = late {
            let r = late
                .request_timeout::<_, String>("late", Duration::from_millis(300))
                .await;
            assert!(r.is_err(), "a connection after shutdown must not be served");
        }
        gate.release.notify_waiters();
        shutdown.await.unwrap();
        for w in waiting {
            w.await.expect("every in-flight request answered");
        }
        assert_eq!(server.connection_count(), 0);
    })
    .await;
}

#[tokio::test]
async fn shutdown_cancels_handlers_that_outlive_the_grace_period() {
    bounded(async {
        let gate = Arc::new(Gate {
            running: AtomicUsize::new(0),
            release: Notify::new(),
        });
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(Config::default().shutdown_grace(Duration::from_millis(50)))
            .serve(Slow(gate.clone()));
        let client = Client::connect(server.local_addr()).await.unwrap();
        let stuck = tokio::spawn(async move { client.request::<_, String>("never").await });
        eventually(|| gate.running.load(Ordering::SeqCst) == 1).await;
        server.shutdown().await; // returns although the handler never finishes
        let err = stuck.await.unwrap().unwrap_err();
        assert!(
            matches!(err, enchufe_client::Error::ClosedByPeer),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_leaves() {
    bounded(async {
        let server = echo_server(Config::default().max_connections(2)).await;
        let addr = server.local_addr();
        let a = Client::connect_with(addr, plain()).await.unwrap();
        let b = Client::connect_with(addr, plain()).await.unwrap();
        let _: String = a.request("a").await.unwrap();
        let _: String = b.request("b").await.unwrap();

        // The kernel completes the handshake, but the server does not serve it.
        let c = Client::connect_with(addr, plain()).await.unwrap();
        let third = tokio::spawn(async move {
            let reply: String = c.request("c").await.unwrap();
            reply
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!third.is_finished(), "third client served above the limit");
        assert_eq!(server.connection_count(), 2);

        a.close().await.unwrap();
        assert_eq!(third.await.unwrap(), "echo:c");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_oversize_header_closes_that_connection_without_allocating() {
    bounded(async {
        let (reasons_tx, mut reasons) = mpsc::channel(1);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .serve(Recorder(reasons_tx));
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        // 0xFFFFFFFF: a 4 GiB frame against the default 8 MiB limit.
        raw.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let mut rest = Vec::new();
        let end = raw.read_to_end(&mut rest).await;
        // Bad input is a failure: the server resets, having sent nothing.
        assert!(
            matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{end:?}"
        );
        assert!(rest.is_empty(), "the server sends nothing");
        let reason = reasons.recv().await.unwrap();
        assert_eq!(
            reason,
            "FrameTooLarge { declared: 4294967295, limit: 8388608 }"
        );
        // The server is unaffected.
        let client = Client::connect(server.local_addr()).await.unwrap();
        let reply: String = client.request("still here").await.unwrap();
        assert_eq!(reply, "still here");
        server.shutdown().await;
    })
    .await;
}

/// Echoes, and reports why each connection ended.
struct Recorder(mpsc::Sender<String>);

impl Handler for Recorder {
    type Request = String;
    type Response = String;
    type Error = String;

    async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, String> {
        match req.as_str() {
            "fail" => Err("refusing to do that".into()),
            "panic" => panic!("handler bug"),
            _ => Ok(Some(req)),
        }
    }

    async fn on_disconnect(&self, _conn: &Connection, reason: &Disconnect) {
        let shown = match reason {
            Disconnect::Error(Error::Framing(e)) => format!("{e:?}"),
            Disconnect::Error(Error::Handler(msg)) => format!("handler: {msg}"),
            Disconnect::Error(Error::HandlerPanic(msg)) => format!("panic: {msg}"),
            other => other.to_string(),
        };
        let _ = self.0.send(shown).await;
    }
}

#[tokio::test]
async fn eof_inside_a_frame_is_an_error_not_a_clean_close() {
    bounded(async {
        let (reasons_tx, mut reasons) = mpsc::channel(1);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .serve(Recorder(reasons_tx));
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        raw.write_all(&[0, 0, 0, 10, b'h', b'o']).await.unwrap();
        raw.shutdown().await.unwrap();
        assert_eq!(
            reasons.recv().await.unwrap(),
            "UnexpectedEof { expected: 14, received: 6 }"
        );
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        raw.write_all(&[0, 0, 0, 2, b'o', b'k']).await.unwrap();
        raw.shutdown().await.unwrap();
        assert_eq!(reasons.recv().await.unwrap(), "closed by the other end");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_utf8_handler_errors_and_panics_cost_one_connection_only() {
    bounded(async {
        let (reasons_tx, mut reasons) = mpsc::channel(1);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .serve(Recorder(reasons_tx));
        let addr = server.local_addr();
        // The default (multiplexed) client, beside plain ones on the same port.
        let survivor = Client::connect(addr).await.unwrap();

        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(&[0, 0, 0, 2, 0xc3, 0x28]).await.unwrap();
        assert_eq!(
            reasons.recv().await.unwrap(),
            "InvalidUtf8 { valid_up_to: 0 }"
        );

        let failing = Client::connect_with(addr, plain()).await.unwrap();
        let err = failing.request::<_, String>("fail").await.unwrap_err();
        // A failure, not a goodbye: the connection is reset.
        assert!(err.is_reset(), "{err:?}");
        assert_eq!(
            reasons.recv().await.unwrap(),
            "handler: refusing to do that"
        );

        let panicking = Client::connect_with(addr, plain()).await.unwrap();
        let err = panicking.request::<_, String>("panic").await.unwrap_err();
        assert!(err.is_reset(), "{err:?}");
        assert_eq!(reasons.recv().await.unwrap(), "panic: handler bug");

        let reply: String = survivor.request("fine").await.unwrap();
        assert_eq!(reply, "fine");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    bounded(async {
        let server =
            echo_server(Config::default().idle_timeout(Some(Duration::from_millis(100)))).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let _: String = client.request("wake").await.unwrap();
        // Send nothing more: the server hangs up.
        assert_eq!(client.recv::<String>().await.unwrap(), None);
        eventually(|| server.connection_count() == 0).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_not_buffered() {
    bounded(async {
        let config = Config::default()
            .outbound_queue(4)
            .write_timeout(Duration::from_millis(200));
        let pushed = Arc::new(Mutex::new(None));
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(config)
            .serve(Flood(pushed.clone()));
        // A raw socket that sends one request and never reads.
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        raw.write_all(&[0, 0, 0, 2, b'g', b'o']).await.unwrap();
        eventually(|| pushed.lock().unwrap().is_some()).await;
        let (sent, err) = pushed.lock().unwrap().take().unwrap();
        assert!(
            matches!(err, Error::WriteStalled(_) | Error::Closed),
            "{err:?}"
        );
        // Either way the predicates say what it means: a stall or a close.
        assert!(err.is_timeout() || err.is_closed(), "{err:?}");
        // 1 MiB frames: the socket buffers hold a few, the queue 4; never all 1024.
        assert!(
            sent < 1024,
            "pushed {sent} MiB into a client that never reads"
        );
        eventually(|| server.connection_count() == 0).await;
        server.shutdown().await;
    })
    .await;
}

/// On any request, pushes 1 MiB frames until a push fails; records how many
/// went out and the error.
struct Flood(Arc<Mutex<Option<(usize, Error)>>>);

impl Handler for Flood {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, _req: String, conn: &Connection) -> Result<Option<String>, Infallible> {
        let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
        for sent in 0..1024 {
            if let Err(e) = conn.push(chunk.clone()).await {
                *self.0.lock().unwrap() = Some((sent, e));
                return Ok(None);
            }
        }
        Ok(None)
    }
}

#[tokio::test]
async fn per_connection_state_is_kept_apart() {
    bounded(async {
        #[derive(Default)]
        struct Count(u32);
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            |_msg: String, conn: Connection| async move {
                let n = conn.with_state(|c: &mut Count| {
                    c.0 += 1;
                    c.0
                });
                Ok::<_, Infallible>(Some(n.to_string()))
            },
        ));
        let a = Client::connect(server.local_addr()).await.unwrap();
        let b = Client::connect(server.local_addr()).await.unwrap();
        for expected in ["1", "2", "3"] {
            assert_eq!(a.request::<_, String>("x").await.unwrap(), expected);
        }
        assert_eq!(b.request::<_, String>("x").await.unwrap(), "1");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_zero_length_frame_reaches_the_handler() {
    bounded(async {
        let server = echo_server(Config::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        assert_eq!(client.request::<_, String>("").await.unwrap(), "echo:");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn binding_a_taken_port_is_a_bind_error() {
    bounded(async {
        let server = echo_server(Config::default()).await;
        let err = Server::bind(server.local_addr()).await.unwrap_err();
        let Error::Bind(taken) = &err else {
            panic!("expected Error::Bind, got {err:?}");
        };
        // The error says where, and the OS's reason stays its own.
        assert_eq!(taken.addr(), server.local_addr().to_string());
        assert_eq!(taken.get_ref().kind(), std::io::ErrorKind::AddrInUse);
        server.shutdown().await;
    })
    .await;
}

/// Eight tasks push to one connection at once while it is busy reading and
/// writing: every push arrives. Guards the driver's wakeup (a push signalled
/// while the driver was draining the queue must not wait for the next one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_from_many_tasks_at_once_all_arrive() {
    const TASKS: usize = 8;
    const PUSHES: usize = 500;
    bounded(async {
        let server = echo_server(Config::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let reply: String = client.request("hola").await.unwrap();
        assert_eq!(reply, "echo:hola");
        let conn = server.connections().pop().unwrap();
        let pushers: Vec<_> = (0..TASKS)
            .map(|t| {
                let conn = conn.clone();
                tokio::spawn(async move {
                    for i in 0..PUSHES {
                        conn.push(format!("{t}/{i}")).await.unwrap();
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        let mut seen = [0usize; TASKS];
        for _ in 0..TASKS * PUSHES {
            let msg: String = client.recv().await.unwrap().unwrap();
            let (t, i) = msg.split_once('/').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            // Each task's pushes arrive in the order it made them.
            assert_eq!(seen[t], i, "task {t}");
            seen[t] += 1;
        }
        for pusher in pushers {
            pusher.await.unwrap();
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_handler_reaches_its_server_and_broadcasts_to_everyone_but_the_sender() {
    bounded(async {
        // A chat room in a closure: no OnceLock<ServerHandle> needed.
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            |line: String, conn: Connection| async move {
                let server = conn.server().expect("the server is running");
                let sent = server
                    .broadcast_except(conn.id(), format!("otro: {line}"))
                    .unwrap();
                Ok::<_, Infallible>(Some(format!("enviado a {sent}")))
            },
        ));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(Client::connect(server.local_addr()).await.unwrap());
        }
        eventually(|| server.connection_count() == 3).await;
        let reply: String = clients[0].request("hola").await.unwrap();
        assert_eq!(reply, "enviado a 2");
        for other in &clients[1..] {
            assert_eq!(other.recv::<String>().await.unwrap().unwrap(), "otro: hola");
        }
        // The sender got only its reply: its next reply is its own.
        let reply: String = clients[0].request("adiós").await.unwrap();
        assert_eq!(reply, "enviado a 2");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_shutdown_line_says_its_counts_are_of_the_requests_in_flight() {
    // One thread: the subscriber set here sees the server's tasks too.
    let (log, _guard) = Log::capture(tracing::Level::INFO);
    bounded(async {
        let server = echo_server(Config::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        for _ in 0..4 {
            let _: String = client.request("hola").await.unwrap();
        }
        // Four answered, none in flight when the shutdown begins: the zeros
        // must not read as "nothing was answered".
        server.shutdown().await;
    })
    .await;
    let text = log.text();
    assert!(
        text.contains(
            "stopped; of the requests in flight at shutdown: answered=0 refused=0 cancelled=0"
        ),
        "{text}"
    );
}
