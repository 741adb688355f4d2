//! Slots that cannot be hoarded and handlers that cannot run forever: a
//! deadline for the first frame and for
//! completing any frame (slowloris), a limit per client address, and a
//! per-request handler timeout. Each case fails on a server without the
//! limit: the raw clients here would hold their connection for the whole
//! idle timeout, and the handlers would run forever.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::log::Log;
use common::{bounded, eventually};
use enchufe::client::{Error as ClientError, ErrorCode};
use enchufe::server::{Config, Disconnect};
use enchufe::{Client, Profile, Server, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// An echo server with `config` that reports every connection's end.
async fn start(config: Config) -> (ServerHandle, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    struct Echo(mpsc::UnboundedSender<String>);
    impl enchufe::Handler for Echo {
        type Request = String;
        type Response = String;
        type Error = Infallible;
        async fn handle(
            &self,
            msg: String,
            _: &enchufe::Connection,
        ) -> Result<Option<String>, Infallible> {
            match msg.as_str() {
                "slow" => tokio::time::sleep(Duration::from_secs(60)).await,
                "a while" => tokio::time::sleep(Duration::from_millis(2500)).await,
                "forever" => std::future::pending().await,
                _ => {}
            }
            Ok(Some(format!("echo:{msg}")))
        }
        async fn on_disconnect(&self, _: &enchufe::Connection, reason: &Disconnect) {
            let _ = self.0.send(reason.to_string());
        }
    }
    let handle = Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .serve(Echo(tx));
    (handle, rx)
}

/// Reads until the server closes; panics if it sends anything.
async fn closed_by_server(raw: &mut TcpStream) {
    let mut buf = [0u8; 16];
    let n = raw.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the server closed without a word");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_first_frame_deadline() {
    bounded(async {
        let config = Config::default().first_frame_timeout(Some(Duration::from_millis(200)));
        let (server, mut reasons) = start(config).await;
        let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
        let start = tokio::time::Instant::now();
        closed_by_server(&mut silent).await;
        assert!(start.elapsed() < Duration::from_secs(5));
        let reason = reasons.recv().await.unwrap();
        assert!(reason.contains("first_frame_timeout"), "{reason}");
        // A client that speaks at once is not affected, even past it.
        let client = Client::connect(server.local_addr()).await.unwrap();
        assert_eq!(client.request::<_, String>("a").await.unwrap(), "echo:a");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(client.request::<_, String>("b").await.unwrap(), "echo:b");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_frame_trickled_a_byte_at_a_time_is_cut_off_while_others_are_served() {
    bounded(async {
        let config = Config::default().frame_timeout(Some(Duration::from_millis(300)));
        let (server, mut reasons) = start(config).await;
        let mut slow = TcpStream::connect(server.local_addr()).await.unwrap();
        // A first frame, whole: past the first-frame deadline's reach.
        slow.write_all(b"\0\0\0\x01x").await.unwrap();
        let mut echo = [0u8; 10];
        slow.read_exact(&mut echo).await.unwrap();
        // Then one byte every 100 ms of a 100-byte frame.
        let trickle = async {
            for byte in [0u8, 0, 0, 100].into_iter().chain(std::iter::repeat(b'.')) {
                if slow.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let other = async {
            let client = Client::connect(server.local_addr()).await.unwrap();
            for i in 0..5 {
                let reply: String = client.request(format!("{i}")).await.unwrap();
                assert_eq!(reply, format!("echo:{i}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let start = tokio::time::Instant::now();
        tokio::join!(trickle, other);
        assert!(start.elapsed() < Duration::from_secs(10));
        let reason = reasons.recv().await.unwrap();
        assert!(reason.contains("frame_timeout"), "{reason}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    bounded(async {
        let config = Config::default().max_connections_per_ip(Some(2));
        let (server, _) = start(config).await;
        let a = Client::connect(server.local_addr()).await.unwrap();
        let b = Client::connect(server.local_addr()).await.unwrap();
        assert_eq!(a.request::<_, String>("a").await.unwrap(), "echo:a");
        assert_eq!(b.request::<_, String>("b").await.unwrap(), "echo:b");
        // The third from 127.0.0.1 is accepted and closed at once.
        let mut third = TcpStream::connect(server.local_addr()).await.unwrap();
        closed_by_server(&mut third).await;
        assert_eq!(server.stats().refused_per_address, 1);
        // One leaves: there is room again.
        drop(a);
        eventually(|| server.connection_count() == 1).await;
        let c = Client::connect(server.local_addr()).await.unwrap();
        assert_eq!(c.request::<_, String>("c").await.unwrap(), "echo:c");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_handler_past_its_timeout_is_stopped() {
    bounded(async {
        let limit = Some(Duration::from_millis(200));
        // Plain: the connection closes with the reason.
        let config = Config::default()
            .handler_timeout(limit)
            .profile(Profile::Plain);
        let (server, mut reasons) = start(config).await;
        let plain = enchufe::client::Config::default().profile(Profile::Plain);
        let client = Client::connect_with(server.local_addr(), plain)
            .await
            .unwrap();
        let err = client.request::<_, String>("slow").await.unwrap_err();
        assert!(err.is_closed(), "{err:?}");
        let reason = reasons.recv().await.unwrap();
        assert!(reason.contains("handler_timeout"), "{reason}");
        server.shutdown().await;

        // Multiplexed: that request gets code 8; the connection goes on.
        let config = Config::default()
            .handler_timeout(limit)
            .profile(Profile::Multiplexed);
        let (server, _) = start(config).await;
        let client = Client::connect_with(
            server.local_addr(),
            enchufe::client::Config::default().profile(Profile::Multiplexed),
        )
        .await
        .unwrap();
        let err = client.request::<_, String>("slow").await.unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::Remote {
                    code: ErrorCode::Timeout,
                    ..
                }
            ),
            "{err:?}"
        );
        // A handler stopped by the server's timeout is a timeout to the
        // client's predicate, and its code can be asked for.
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(err.code(), Some(ErrorCode::Timeout));
        assert_eq!(client.request::<_, String>("ok").await.unwrap(), "echo:ok");
        server.shutdown().await;
    })
    .await;
}

/// Reads one frame's payload.
async fn read_frame(raw: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 4];
    raw.read_exact(&mut head).await.unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(head) as usize];
    raw.read_exact(&mut payload).await.unwrap();
    payload
}

#[tokio::test]
async fn a_client_gone_after_its_half_close_frees_its_slot_in_both_profiles() {
    bounded(async {
        for profile in [Profile::Plain, Profile::Multiplexed] {
            // No handler deadline: only noticing the client frees the slot.
            let config = Config::default()
                .profile(profile)
                .handler_timeout(None)
                .eof_keepalive(Some(Duration::from_secs(1)));
            let (server, mut reasons) = start(config).await;
            let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
            if profile == Profile::Plain {
                raw.write_all(b"\0\0\0\x07forever").await.unwrap();
            } else {
                use enchufe::framing::mux::Hello;

                let hello = Hello::new("").encode().unwrap();
                raw.write_all(&(hello.len() as u32).to_be_bytes())
                    .await
                    .unwrap();
                raw.write_all(&hello).await.unwrap();
                read_frame(&mut raw).await;
                raw.write_all(&common::mux_peer::wire_frame(
                    enchufe::framing::mux::Kind::Request,
                    1,
                    b"forever",
                ))
                .await
                .unwrap();
            }
            // The course's last question: send, then half-close.
            raw.shutdown().await.unwrap();
            eventually(|| server.connection_count() == 1).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(server.connection_count(), 1, "half-closed: still served");
            // Then the client is gone: its socket answers with a reset
            // (here at once; a socket that no longer exists answers the
            // server's keepalive probe so).
            raw.set_zero_linger().unwrap();
            drop(raw);
            let freed = tokio::time::timeout(Duration::from_secs(10), async {
                eventually(|| server.connection_count() == 0).await;
            })
            .await;
            assert!(freed.is_ok(), "{profile:?}: the slot stays taken");
            let reason = reasons.recv().await.unwrap();
            assert!(
                reason.contains("reset") || reason.contains("pipe"),
                "{reason}"
            );
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_half_closing_client_is_probed_and_still_gets_its_answer() {
    bounded(async {
        let config = Config::default()
            .profile(Profile::Plain)
            .eof_keepalive(Some(Duration::from_secs(1)));
        let (server, _) = start(config).await;
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        let port = raw.local_addr().unwrap().port();
        raw.write_all(b"\0\0\0\x07a while").await.unwrap();
        raw.shutdown().await.unwrap();
        // While the handler runs (2.5 s), the server probes this client
        // (every 1 s), which answers: `ss` shows the server's socket's
        // keepalive timer.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let out = tokio::process::Command::new("ss")
            .args(["-tnoH", &format!("dport = :{port}")])
            .output()
            .await
            .expect("ss (iproute2) is on the image");
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(line.contains("keepalive"), "ss said: {line:?}");
        assert_eq!(read_frame(&mut raw).await, b"echo:a while");
        let mut rest = Vec::new();
        raw.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        server.shutdown().await;
    })
    .await;
}

#[test]
fn handlers_have_a_deadline_by_default() {
    let config = Config::default();
    assert_eq!(config.handler_timeout, Some(Duration::from_secs(60)));
    assert_eq!(config.eof_keepalive, Some(Duration::from_secs(10)));
}

#[tokio::test]
async fn bad_input_is_counted_but_warned_about_rarely() {
    // One thread: the subscriber set here sees the server's tasks too.
    let (log, _guard) = Log::capture(tracing::Level::INFO);
    bounded(async {
        let (server, mut reasons) = start(Config::default()).await;
        for _ in 0..100 {
            let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
            raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            closed_by_server(&mut raw).await;
            reasons.recv().await.unwrap();
        }
        assert_eq!(server.stats().closed_for_bad_input, 100);
        assert_eq!(server.stats().not_frames, 100);
        server.shutdown().await;
    })
    .await;
    // The 1st, 2nd, 4th, ..., 64th: 7 warnings for 100 bad connections.
    let n = log.lines_at(&["WARN"]);
    assert!((1..=8).contains(&n), "{n} warnings for 100 bad connections");
}

#[tokio::test]
async fn connections_that_send_nothing_are_counted_but_logged_rarely() {
    // One thread: the subscriber set here sees the server's tasks too.
    let (log, _guard) = Log::capture(tracing::Level::INFO);
    bounded(async {
        let (server, _) = start(Config::default()).await;
        // Connect and close at once, as a port check or a connect flood does.
        for _ in 0..2_000 {
            drop(TcpStream::connect(server.local_addr()).await.unwrap());
        }
        eventually(|| server.stats().empty_connections == 2_000).await;
        assert_eq!(server.stats().closed_for_bad_input, 0);
        server.shutdown().await;
    })
    .await;
    // The 1st, 2nd, 4th, ..., 1024th: 11 lines, plus the server's own few.
    let n = log.lines_at(&["INFO", "WARN", "ERROR"]);
    assert!(
        n < 30,
        "{n} log lines at INFO or above for 2,000 empty connections"
    );
}

#[tokio::test]
async fn the_listen_backlog_is_what_the_config_says() {
    bounded(async {
        let (server, _) = start(Config::default().listen_backlog(Some(7))).await;
        // `ss` shows a listening socket's backlog in its Send-Q column.
        let port = server.local_addr().port();
        let out = tokio::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .await
            .expect("ss (iproute2) is on the image");
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let backlog: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(backlog.get(2), Some(&"7"), "ss said: {line:?}");
        server.shutdown().await;
    })
    .await;
}

/// With the default connection limit, more silent connections than
/// the old default (1,024) leave room for an ordinary client, served at once
/// rather than after the first-frame deadline (10 s) frees a slot.
#[tokio::test]
async fn silent_connections_past_the_old_limit_do_not_lock_out_a_client() {
    bounded(async {
        // 2,000 sockets on each side in this one process.
        #[cfg(unix)]
        {
            use nix::sys::resource::{getrlimit, setrlimit, Resource};
            if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
                if soft < hard {
                    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
                }
            }
        }
        let (server, _) = start(Config::default()).await;
        let mut silent = Vec::new();
        for _ in 0..2_000 {
            silent.push(TcpStream::connect(server.local_addr()).await.unwrap());
        }
        eventually(|| server.connection_count() == 2_000).await;
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            let client = Client::connect(server.local_addr()).await.unwrap();
            client.request::<_, String>("hi").await.unwrap()
        })
        .await;
        assert_eq!(served.ok().as_deref(), Some("echo:hi"), "locked out");
        drop(silent);
        server.shutdown().await;
    })
    .await;
}
