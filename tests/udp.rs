//! UDP: `UdpServer` and `UdpClient` against each other, against the
//! course-style Python UDP client and server (`tests/interop/udp_*.py`,
//! standard library only), through a relay that loses datagrams, and with
//! bad input (datagrams over the limit, undecodable, handler panics, more
//! than the handler limit at once). Every socket is on 127.0.0.1 or ::1 port
//! 0 and every test is bounded in time. Run with `cargo test --test udp`
//! (needs `python3`).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::interop::{spawn_python, SCRIPT_TIMEOUT};
use common::{bounded, eventually};
use enchufe::udp::{client, handler_fn, server, Error, Handler, UdpServerHandle, MAX_DATAGRAM};
use enchufe::{UdpClient, UdpServer};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

/// A UDP server on `addr` (port 0) with `config`, serving `handler`.
async fn serve_on<H: Handler>(addr: &str, config: server::Config, handler: H) -> UdpServerHandle {
    UdpServer::bind(addr)
        .await
        .unwrap()
        .with_config(config)
        .unwrap()
        .serve(handler)
}

/// [`serve_on`] 127.0.0.1:0.
async fn serve<H: Handler>(config: server::Config, handler: H) -> UdpServerHandle {
    serve_on("127.0.0.1:0", config, handler).await
}

/// A UDP server on `addr` answering `echo:<msg>`, with `config`.
async fn echo_server_on(addr: &str, config: server::Config) -> UdpServerHandle {
    let echo =
        handler_fn(
            |msg: String, _ctx| async move { Ok::<_, Infallible>(Some(format!("echo:{msg}"))) },
        );
    serve_on(addr, config, echo).await
}

async fn echo_server(config: server::Config) -> UdpServerHandle {
    echo_server_on("127.0.0.1:0", config).await
}

/// A client of `addr` that waits `timeout` per attempt.
async fn client_of(addr: SocketAddr, timeout: Duration, retries: u32) -> UdpClient {
    let config = client::Config::default().timeout(timeout).retries(retries);
    UdpClient::connect_with(addr, config).await.unwrap()
}

/// A raw socket on 127.0.0.1:0 connected to `addr`: the test's own sender.
async fn raw_socket_to(addr: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(addr).await.unwrap();
    socket
}

async fn recv_text(socket: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).await.unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[tokio::test]
async fn request_gets_its_reply_over_ipv4_and_ipv6() {
    bounded(async {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let server = echo_server_on(host, server::Config::default()).await;
            let client = UdpClient::connect(server.local_addr()).await.unwrap();
            assert_eq!(client.peer_addr(), server.local_addr());
            for msg in ["hola", "ñandú 🦀", ""] {
                let reply: String = client.request(msg).await.unwrap();
                assert_eq!(reply, format!("echo:{msg}"), "{host}");
            }
            assert_eq!(server.stats().replies, 3);
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn send_and_recv_one_datagram_each_way() {
    bounded(async {
        let server = echo_server(server::Config::default()).await;
        let client = UdpClient::connect(server.local_addr()).await.unwrap();
        client.send("uno").await.unwrap();
        let reply: String = client.recv().await.unwrap();
        assert_eq!(reply, "echo:uno");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn defaults_are_the_documented_limits() {
    let server = server::Config::default();
    assert_eq!(server.max_datagram, 65_507);
    assert_eq!(server.max_datagram, MAX_DATAGRAM);
    assert_eq!(server.max_in_flight, 256);
    assert_eq!(server.shutdown_grace, Duration::from_secs(5));
    assert_eq!(server.batch, 32);
    let client = client::Config::default();
    assert_eq!(client.timeout, Duration::from_secs(1));
    assert_eq!(client.retries, 3);
    assert_eq!(client.max_datagram, MAX_DATAGRAM);
}

#[tokio::test]
async fn a_datagram_of_exactly_the_default_limit_goes_both_ways() {
    bounded(async {
        let server = serve(server::Config::default(), handler_fn(|msg: bytes::Bytes, _ctx| async move {
                Ok::<_, Infallible>(Some(msg))
            })).await;
        let client = UdpClient::connect(server.local_addr()).await.unwrap();
        let big = vec![b'x'; MAX_DATAGRAM];
        let reply: Vec<u8> = client.request(big.clone()).await.unwrap();
        assert_eq!(reply, big);
        let err = client
            .send(vec![b'x'; MAX_DATAGRAM + 1])
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { size, limit } if size == MAX_DATAGRAM + 1 && limit == MAX_DATAGRAM),
            "{err:?}"
        );
        assert_eq!(server.stats().received, 1, "nothing was sent");
        server.shutdown().await;
    })
    .await;
}

// --- losing datagrams -------------------------------------------------------

/// A relay from its own address to `server` that drops every `nth`
/// datagram it sees, counting both directions. Returns its address and how
/// many it dropped so far.
async fn lossy_relay(server: SocketAddr, nth: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = raw_socket_to(server).await;
    let addr = front.local_addr().unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let count = dropped.clone();
    tokio::spawn(async move {
        let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
        let mut client = None;
        let mut seen = 0u64;
        loop {
            let (to_server, n) = tokio::select! {
                got = front.recv_from(&mut up) => match got {
                    Ok((n, from)) => { client = Some(from); (true, n) }
                    Err(_) => continue,
                },
                got = back.recv(&mut down) => match got {
                    Ok(n) => (false, n),
                    Err(_) => continue,
                },
            };
            seen += 1;
            if seen.is_multiple_of(nth) {
                count.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let _ = match (to_server, client) {
                (true, _) => back.send(&up[..n]).await,
                (false, Some(client)) => front.send_to(&down[..n], client).await,
                (false, None) => continue,
            };
        }
    });
    (addr, dropped)
}

#[tokio::test]
async fn request_retries_through_a_relay_that_drops_every_third_datagram() {
    bounded(async {
        let server = echo_server(server::Config::default()).await;
        let (relay, dropped) = lossy_relay(server.local_addr(), 3).await;
        let client = client_of(relay, Duration::from_millis(100), 3).await;
        let started = Instant::now();
        for i in 0..30 {
            let msg = format!("mensaje {i}");
            let reply: String = client.request(msg.as_str()).await.unwrap();
            assert_eq!(reply, format!("echo:{msg}"));
        }
        let dropped = dropped.load(Ordering::Relaxed);
        let stats = server.stats();
        println!(
            "30 requests through a relay dropping every 3rd datagram: {dropped} dropped, \
             {} received by the server, {:?}",
            stats.received,
            started.elapsed()
        );
        // Every datagram dropped cost its request a retry, and each still
        // got its own reply.
        assert!(dropped >= 10, "the relay dropped {dropped}");
        assert!(stats.received >= 30);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn request_to_a_silent_server_times_out_after_every_attempt() {
    bounded(async {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = client_of(silent.local_addr().unwrap(), Duration::from_millis(50), 2).await;
        let err = client
            .request::<_, String>("¿hay alguien?")
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(matches!(err, Error::Timeout { attempts: 3, .. }), "{err:?}");
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let (n, _) = silent.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], "¿hay alguien?".as_bytes());
        }
        assert!(
            silent.try_recv_from(&mut buf).is_err(),
            "exactly 3 attempts"
        );
    })
    .await;
}

#[tokio::test]
async fn request_where_nothing_listens_is_refused_without_waiting() {
    bounded(async {
        let gone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let client = client_of(addr, Duration::from_secs(30), 3).await;
        let started = Instant::now();
        let err = client.request::<_, String>("hola").await.unwrap_err();
        assert!(
            matches!(err, Error::Refused { addr: a } if a == addr),
            "{err:?}"
        );
        assert!(err.is_refused());
        assert!(started.elapsed() < Duration::from_secs(10), "not retried");
    })
    .await;
}

#[tokio::test]
async fn a_late_reply_to_an_earlier_request_is_discarded() {
    bounded(async {
        // The first request's reply comes after its only attempt gave up.
        let server = serve(
            server::Config::default(),
            handler_fn(|msg: String, _ctx| async move {
                if msg == "lento" {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok::<_, Infallible>(Some(format!("echo:{msg}")))
            }),
        )
        .await;
        let client = client_of(server.local_addr(), Duration::from_millis(20), 0).await;
        let err = client.request::<_, String>("lento").await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        eventually(|| server.stats().replies == 1).await;
        let reply: String = client.request("rápido").await.unwrap();
        assert_eq!(reply, "echo:rápido");
        server.shutdown().await;
    })
    .await;
}

// --- bad input ----------------------------------------------------------------

#[tokio::test]
async fn a_burst_is_taken_and_answered_in_batches_bad_datagrams_costing_only_themselves() {
    bounded(async {
        let config = server::Config::default().max_datagram(100).batch(16);
        let server = UdpServer::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(config)
            .unwrap();
        let raw = raw_socket_to(server.local_addr().unwrap()).await;
        // 64 datagrams wait in the socket before the server reads one:
        // every tenth over the limit, every tenth from the fifth not UTF-8.
        let mut expected = Vec::new();
        for i in 0..64 {
            match i % 10 {
                0 => drop(raw.send(&[b'x'; 101]).await.unwrap()),
                5 => drop(raw.send(&[0xff]).await.unwrap()),
                _ => {
                    raw.send(i.to_string().as_bytes()).await.unwrap();
                    expected.push(format!("echo:{i}"));
                }
            }
        }
        let echo = handler_fn(|msg: String, _ctx| async move {
            Ok::<_, Infallible>(Some(format!("echo:{msg}")))
        });
        let server = server.serve(echo);
        let mut replies = Vec::new();
        while replies.len() < expected.len() {
            replies.push(recv_text(&raw).await);
        }
        assert_eq!(replies, expected, "every good datagram answered, in order");
        eventually(|| server.stats().replies == expected.len() as u64).await;
        let stats = server.stats();
        assert_eq!(
            (stats.received, stats.too_large, stats.undecodable),
            (64, 7, 6)
        );
        if cfg!(target_os = "linux") {
            // recvmmsg: at most 16 a call, so at least 4 calls, and far
            // fewer than one a datagram.
            assert!(
                (4..=16).contains(&stats.batches),
                "{} receive calls for 64 datagrams",
                stats.batches
            );
        } else {
            assert_eq!(stats.batches, 64);
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_oversize_datagram_is_counted_and_the_server_keeps_serving() {
    bounded(async {
        let server = echo_server(server::Config::default().max_datagram(1000)).await;
        let raw = raw_socket_to(server.local_addr()).await;
        raw.send(&[b'x'; 1500]).await.unwrap();
        raw.send(&[b'x'; 1001]).await.unwrap();
        raw.send(b"hola").await.unwrap();
        assert_eq!(recv_text(&raw).await, "echo:hola");
        let stats = server.stats();
        assert_eq!((stats.received, stats.too_large, stats.replies), (3, 2, 1));

        // Exactly the limit is served.
        let exact = "y".repeat(995);
        raw.send(exact.as_bytes()).await.unwrap();
        assert_eq!(recv_text(&raw).await, format!("echo:{exact}"));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_reply_over_the_clients_limit_is_reported_truncated() {
    bounded(async {
        let server = serve(
            server::Config::default(),
            handler_fn(|n: String, _ctx| async move {
                Ok::<_, Infallible>(Some("z".repeat(n.parse().unwrap_or(0))))
            }),
        )
        .await;
        let config = client::Config::default().max_datagram(100);
        let client = UdpClient::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        let err = client.request::<_, String>("101").await.unwrap_err();
        assert!(
            matches!(err, Error::Truncated { limit: 100 }) && err.is_frame_too_large(),
            "{err:?}"
        );
        let fits: String = client.request("100").await.unwrap();
        assert_eq!(fits.len(), 100);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn undecodable_datagrams_and_panics_cost_only_themselves() {
    bounded(async {
        let server = serve(
            server::Config::default(),
            handler_fn(|msg: String, _ctx| async move {
                assert_ne!(msg, "boom", "the handler panics on boom");
                Ok::<_, Infallible>(Some(format!("echo:{msg}")))
            }),
        )
        .await;
        let raw = raw_socket_to(server.local_addr()).await;
        raw.send(&[0xff, 0xfe]).await.unwrap();
        raw.send(b"boom").await.unwrap();
        raw.send(b"hola").await.unwrap();
        assert_eq!(recv_text(&raw).await, "echo:hola");
        eventually(|| {
            let s = server.stats();
            s.undecodable == 1 && s.handler_failures == 1
        })
        .await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn past_max_in_flight_datagrams_are_dropped_and_counted() {
    bounded(async {
        let gate = Arc::new(Semaphore::new(0));
        let held = gate.clone();
        let server = serve(
            server::Config::default().max_in_flight(2),
            handler_fn(move |msg: String, _ctx| {
                let gate = held.clone();
                async move {
                    let _pass = gate.acquire().await;
                    Ok::<_, Infallible>(Some(format!("echo:{msg}")))
                }
            }),
        )
        .await;
        let raw = raw_socket_to(server.local_addr()).await;
        for i in 0..5 {
            raw.send(format!("{i}").as_bytes()).await.unwrap();
        }
        eventually(|| server.stats().received == 5).await;
        assert_eq!(server.stats().busy_drops, 3);
        gate.add_permits(2);
        let mut replies = vec![recv_text(&raw).await, recv_text(&raw).await];
        replies.sort();
        assert_eq!(replies, ["echo:0", "echo:1"]);

        // The slots are free again.
        gate.add_permits(1);
        raw.send(b"otra").await.unwrap();
        assert_eq!(recv_text(&raw).await, "echo:otra");
        server.shutdown().await;
    })
    .await;
}

// --- shutdown ---------------------------------------------------------------

#[tokio::test]
async fn shutdown_lets_running_handlers_reply_then_closes_the_socket() {
    bounded(async {
        let server = serve(
            server::Config::default(),
            handler_fn(|msg: String, _ctx| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, Infallible>(Some(format!("echo:{msg}")))
            }),
        )
        .await;
        let addr = server.local_addr();
        let client = Arc::new(client_of(addr, Duration::from_secs(5), 0).await);
        let asking = client.clone();
        let pending = tokio::spawn(async move { asking.request::<_, String>("última").await });
        eventually(|| server.stats().received == 1).await;
        server.shutdown().await;
        assert_eq!(pending.await.unwrap().unwrap(), "echo:última");
        server.stopped().await;

        // The socket is closed: the port answers with ICMP port unreachable.
        let err = client.request::<_, String>("¿sigues?").await.unwrap_err();
        assert!(err.is_refused(), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn shutdown_drops_handlers_still_running_after_the_grace_period() {
    bounded(async {
        let server = serve(
            server::Config::default().shutdown_grace(Duration::from_millis(100)),
            handler_fn(|_: String, _ctx| async move {
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(None::<String>)
            }),
        )
        .await;
        let raw = raw_socket_to(server.local_addr()).await;
        raw.send(b"nunca").await.unwrap();
        eventually(|| server.stats().received == 1).await;
        let started = Instant::now();
        server.shutdown().await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "{took:?}"
        );
    })
    .await;
}

// --- the course's Python UDP client and server ------------------------------

#[derive(Deserialize)]
struct ClientReport {
    received: Vec<String>,
    from_server: bool,
}

#[tokio::test]
async fn python_udp_client_against_an_enchufe_udp_server() {
    bounded(async {
        for host in ["127.0.0.1", "::1"] {
            let ip: std::net::IpAddr = host.parse().unwrap();
            let bind = SocketAddr::new(ip, 0).to_string();
            let server = echo_server_on(&bind, server::Config::default()).await;
            let port = server.local_addr().port().to_string();
            let messages = ["hola", "Aquí va mi respuesta", "🦀 ñandú"];
            let json = serde_json::to_string(&messages).unwrap();
            let child = spawn_python(
                "udp_client.py",
                &[
                    "--host",
                    host,
                    "--port",
                    &port,
                    "--messages",
                    &json,
                    "--timeout",
                    SCRIPT_TIMEOUT,
                ],
            );
            let output = child.wait_with_output().await.unwrap();
            assert!(
                output.status.success(),
                "udp_client.py failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            let report: ClientReport = serde_json::from_slice(&output.stdout).unwrap();
            let expected: Vec<String> = messages.iter().map(|m| format!("echo:{m}")).collect();
            assert_eq!(report.received, expected, "{host}");
            assert!(report.from_server, "replies come from the server's address");
            assert_eq!(server.stats().replies, 3);
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn enchufe_udp_client_against_the_python_udp_server() {
    bounded(async {
        for host in ["127.0.0.1", "::1"] {
            let mut child = spawn_python(
                "udp_server.py",
                &["--host", host, "--count", "4", "--timeout", SCRIPT_TIMEOUT],
            );
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let first = lines.next_line().await.unwrap().expect("a PORT line");
            let port: u16 = first.strip_prefix("PORT ").unwrap().parse().unwrap();
            let addr = SocketAddr::new(host.parse().unwrap(), port);

            let config = client::Config::default()
                .timeout(Duration::from_secs(5))
                .max_datagram(1000);
            let client = UdpClient::connect_with(addr, config).await.unwrap();
            for msg in ["hola", "ñandú 🦀", ""] {
                let reply: String = client.request(msg).await.unwrap();
                assert_eq!(reply, format!("echo:{msg}"), "{host}");
            }
            // The Python server's reply is over our limit: reported, not cut.
            let err = client.request::<_, String>("big:1001").await.unwrap_err();
            assert!(matches!(err, Error::Truncated { limit: 1000 }), "{err:?}");

            assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("DONE"));
            assert!(child.wait().await.unwrap().success());
        }
    })
    .await;
}

/// A burst of 1,000 datagrams sent while the server reads nothing (its
/// socket is bound with a 4 MiB receive buffer, but it is not serving yet)
/// is answered whole once it serves, and the 1,000 replies wait in the
/// client's 4 MiB receive buffer until it reads them. With the default
/// buffers (208 KiB) the kernel drops most of such a burst. Needs
/// `net.core.rmem_max` ≥ 4 MiB (the kernel caps the size silently; the
/// test says so rather than failing on a lost datagram).
#[tokio::test]
async fn a_large_receive_buffer_holds_a_burst_the_server_is_slow_to_read() {
    const BURST: usize = 1000;
    const BUFFER: usize = 4 << 20;
    let server = UdpServer::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(
            server::Config::default()
                .recv_buffer(BUFFER)
                .max_in_flight(2 * BURST),
        )
        .unwrap();
    let (granted, _) = server.buffer_sizes().unwrap();
    assert!(
        granted >= BUFFER,
        "the kernel granted a {granted}-byte receive buffer: raise net.core.rmem_max to {BUFFER}"
    );
    let addr = server.local_addr().unwrap();
    let client = UdpClient::connect_with(addr, client::Config::default().recv_buffer(BUFFER))
        .await
        .unwrap();
    assert!(client.buffer_sizes().unwrap().0 >= BUFFER);
    for i in 0..BURST {
        client.send(format!("datagram {i}")).await.unwrap();
    }
    let handle = server.serve(handler_fn(|req: String, _ctx| async move {
        Ok::<_, Infallible>(Some(req))
    }));
    let mut replies = std::collections::HashSet::new();
    bounded(async {
        while replies.len() < BURST {
            replies.insert(client.recv::<String>().await.unwrap());
        }
    })
    .await;
    assert!((0..BURST).all(|i| replies.contains(&format!("datagram {i}"))));
    let stats = handle.stats();
    assert_eq!((stats.received, stats.busy_drops), (BURST as u64, 0));
    handle.shutdown().await;
}
