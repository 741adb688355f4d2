//! Handlers that outlive their clients, and failures the client can see:
//! a plain handler whose client reset is dropped at once, a
//! half-close still gets its answers, a connection ended by a failure is
//! reset rather than closed like a goodbye, and shutdown says what became of
//! the requests in flight. Run with `cargo test --test failures`.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::lab::Lab;
use common::{bounded, eventually, serve};
use enchufe::Client;
use enchufe_client::{Error as ClientError, ErrorCode};
use enchufe_server::{Config, Profile, ShutdownReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &str) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Reads frames until EOF.
async fn read_to_eof(stream: &mut TcpStream) -> Vec<String> {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        frames.push(String::from_utf8(rest[4..4 + len].to_vec()).unwrap());
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty(), "a cut frame: {rest:?}");
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_that_reset_during_a_never_ending_handler_free_their_slots() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), Config::default()).await;
        let mut clients = Vec::new();
        for _ in 0..20 {
            let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
            stream.write_all(&frame("hang")).await.unwrap();
            clients.push(stream);
        }
        eventually(|| lab.started.load(Ordering::SeqCst) == 20).await;
        assert_eq!(server.connection_count(), 20);
        for stream in clients {
            // An RST, as from a client that crashed or was killed.
            stream.set_zero_linger().unwrap();
            drop(stream);
        }
        // Each handler's future is dropped and each slot freed, although no
        // handler ever finishes.
        eventually(|| server.connection_count() == 0 && lab.dropped.load(Ordering::SeqCst) == 20)
            .await;
        assert_eq!(server.stats().closed_for_bad_input, 20);
    })
    .await;
}

#[tokio::test]
async fn a_half_close_while_a_handler_runs_still_gets_every_answer_in_order() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), Config::default()).await;
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        // Two pipelined requests, then "send, shutdown(SHUT_WR), read the
        // answer": the server reads the second request and the EOF while
        // the first handler runs, and cancels nothing.
        let mut both = frame("hang");
        both.extend_from_slice(&frame("two"));
        stream.write_all(&both).await.unwrap();
        stream.shutdown().await.unwrap();
        // Both requests and the EOF were sent before the handler started,
        // so the server read them (watching) in the same turn as it
        // started it, and on this single-threaded runtime that turn is over
        // once the handler is seen running.
        eventually(|| lab.started.load(Ordering::SeqCst) == 1).await;
        assert_eq!(lab.dropped.load(Ordering::SeqCst), 0, "not cancelled");
        lab.release.notify_one();
        assert_eq!(read_to_eof(&mut stream).await, ["released", "echo:two"]);
        eventually(|| server.connection_count() == 0).await;
    })
    .await;
}

#[tokio::test]
async fn a_connection_ended_by_a_failure_is_reset_and_a_goodbye_is_not() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab, Config::default().max_frame_length(1024)).await;
        let addr = server.local_addr();
        // The plain profile, whose wire has no error frame: the failure
        // is told by the reset (a multiplexed client gets error replies).
        let plain = enchufe_client::Config::default().profile(Profile::Plain);
        for failing in ["fail", "panic", "big"] {
            let client = Client::connect_with(addr, plain.clone()).await.unwrap();
            let err = client.request::<_, String>(failing).await.unwrap_err();
            assert!(
                err.is_reset() && matches!(err, ClientError::ResetByPeer(_)),
                "{failing}: {err:?}"
            );
            assert!(err.is_closed());
            assert!(err.to_string().contains("on an error"), "{err}");
        }
        // Bad input (not UTF-8 for a `String` handler): reset too.
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(&[0, 0, 0, 2, 0xc3, 0x28]).await.unwrap();
        let mut buf = [0u8; 16];
        let read = raw.read(&mut buf).await;
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{read:?}"
        );

        // A goodbye: the handler closes its connection.
        let client = Client::connect_with(addr, plain).await.unwrap();
        let reply: String = client.request("hi").await.unwrap();
        assert_eq!(reply, "echo:hi");
        let err = client.request::<_, String>("bye").await.unwrap_err();
        assert!(matches!(err, ClientError::ClosedByPeer), "{err:?}");
        assert!(!err.is_reset());
    })
    .await;
}

#[tokio::test]
async fn plain_shutdown_reports_requests_answered_and_cancelled() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), Config::default()).await;
        let mut calls = Vec::new();
        for _ in 0..3 {
            let client = Client::connect(server.local_addr()).await.unwrap();
            calls.push(tokio::spawn(async move {
                client.request::<_, String>("hang").await
            }));
        }
        eventually(|| lab.started.load(Ordering::SeqCst) == 3).await;
        let stopping = server.clone();
        let report = tokio::spawn(async move { stopping.shutdown().await });
        eventually(|| server.is_shutting_down()).await;
        lab.release.notify_waiters();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), "released");
        }
        let report = report.await.unwrap();
        assert_eq!(
            (report.answered, report.refused, report.cancelled),
            (3, 0, 0)
        );

        // Handlers that outlive the grace period are cancelled, and counted.
        let lab = Lab::default();
        let config = Config::default().shutdown_grace(Duration::from_millis(50));
        let server = serve(lab.clone(), config).await;
        let mut calls = Vec::new();
        for _ in 0..2 {
            let client = Client::connect(server.local_addr()).await.unwrap();
            calls.push(tokio::spawn(async move {
                client.request::<_, String>("hang").await
            }));
        }
        eventually(|| lab.started.load(Ordering::SeqCst) == 2).await;
        let report: ShutdownReport = server.shutdown().await;
        assert_eq!(
            (report.answered, report.refused, report.cancelled),
            (0, 0, 2)
        );
        assert_eq!(lab.dropped.load(Ordering::SeqCst), 2);
        for call in calls {
            assert!(call.await.unwrap().is_err());
        }
    })
    .await;
}

#[tokio::test]
async fn multiplexed_shutdown_reports_requests_answered_refused_and_cancelled() {
    bounded(async {
        let lab = Lab::default();
        let config = Config::default()
            .profile(Profile::Multiplexed)
            .max_in_flight(2);
        let server = serve(lab.clone(), config.clone()).await;
        let client_config = enchufe_client::Config::default().profile(Profile::Multiplexed);
        let client = Client::connect_with(server.local_addr(), client_config.clone())
            .await
            .unwrap();
        let call = |client: &Client| {
            let client = client.clone();
            tokio::spawn(async move { client.request::<_, String>("hang").await })
        };
        let running = [call(&client), call(&client)];
        eventually(|| lab.started.load(Ordering::SeqCst) == 2).await;
        // Two more: parked behind `max_in_flight`, or read after shutdown
        // began; either way refused, never started.
        let waiting = [call(&client), call(&client)];
        let stopping = server.clone();
        let report = tokio::spawn(async move { stopping.shutdown().await });
        for call in waiting {
            let err = call.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientError::Remote {
                        code: ErrorCode::ShuttingDown,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        lab.release.notify_waiters();
        for call in running {
            assert_eq!(call.await.unwrap().unwrap(), "released");
        }
        let report = report.await.unwrap();
        assert_eq!(
            (report.answered, report.refused, report.cancelled),
            (2, 2, 0)
        );
        assert_eq!(lab.started.load(Ordering::SeqCst), 2);

        let lab = Lab::default();
        let server = serve(
            lab.clone(),
            config.shutdown_grace(Duration::from_millis(50)),
        )
        .await;
        let client = Client::connect_with(server.local_addr(), client_config)
            .await
            .unwrap();
        let running = [call(&client), call(&client)];
        eventually(|| lab.started.load(Ordering::SeqCst) == 2).await;
        let report = server.shutdown().await;
        assert_eq!(
            (report.answered, report.refused, report.cancelled),
            (0, 0, 2)
        );
        assert_eq!(lab.dropped.load(Ordering::SeqCst), 2);
        for call in running {
            assert!(call.await.unwrap().is_err());
        }
    })
    .await;
}
