//! The servers and clients this binary runs as its own children: handlers
//! that the `echo_server` example does not have (slow, pushing, panicking,
//! JSON), a server with every door on one port (frames, HTTP, WebSocket),
//! and a client to be killed with SIGKILL in the middle of a request.

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use enchufe::server::{Config, Profile};
use enchufe::{handler_fn, Json, Server};
use tokio::io::AsyncWriteExt;

/// Pushes sent per request by the `push` server: 128 of 8 MiB, 1 GiB.
pub(crate) const PUSHES: usize = 128;
/// Size of each push, the default frame limit.
pub(crate) const PUSH_LEN: usize = 8 << 20;
/// The body the `doors` server's HTTP door answers `GET /big` with (a
/// client that asks for it and never reads fills its output).
pub(crate) const BIG_LEN: usize = 64 << 10;

/// Serves `kind` on `addr` until SIGTERM, then shuts down gracefully.
pub(crate) async fn serve(
    kind: &str,
    addr: &str,
    mux: bool,
    delay: Duration,
    tls: Option<&std::path::Path>,
) -> Result<(), String> {
    let profile = if mux {
        Profile::Multiplexed
    } else {
        Profile::Plain
    };
    let server = Server::bind(addr).await.map_err(|e| e.to_string())?;
    let local = server.local_addr().map_err(|e| e.to_string())?;
    let server = server.with_config(Config::default().profile(profile));
    // Every door on the one port, each with its defaults: frames (an
    // echo), HTTP (`pong`, or `BIG_LEN` bytes at `/big`) and WebSocket
    // (its messages are frames, echoed by the same handler).
    let server = if kind == "doors" {
        let http = enchufe::http::handler_fn(|req: enchufe::http::Request| async move {
            if req.path() == "/big" {
                enchufe::http::Response::text(200, "x".repeat(BIG_LEN))
            } else {
                enchufe::http::Response::text(200, "pong")
            }
        });
        server
            .http(enchufe::http::door(http))
            .web(enchufe::ws::Options::default())
    } else {
        server
    };
    let server = match tls {
        Some(path) => server.tls(self_signed(path)?),
        None => server,
    };
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => drop(term.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    match kind {
        "doors" => {
            let echo =
                handler_fn(|frame: Bytes, _conn| async move { Ok::<_, Infallible>(Some(frame)) });
            server.run(echo, stop).await;
        }
        "slow" => {
            let slow = handler_fn(move |frame: Bytes, _conn| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(Some(frame))
            });
            server.run(slow, stop).await;
        }
        "push" => {
            // `go` starts 1 GiB of pushes, each a fresh 8 MiB
            // buffer (so memory is really taken), until a push fails.
            let push = handler_fn(|frame: Bytes, conn: enchufe::Connection| async move {
                if frame.as_ref() != b"go" {
                    return Ok(Some(frame));
                }
                for i in 0..PUSHES {
                    if let Err(e) = conn.push(Bytes::from(vec![0x5a; PUSH_LEN])).await {
                        eprintln!("push {i} failed: {e}");
                        break;
                    }
                }
                Ok::<_, Infallible>(None)
            });
            server.run(push, stop).await;
        }
        "panic" => {
            let panicky = handler_fn(|frame: Bytes, _conn| async move {
                if frame.as_ref() == b"panic" {
                    panic!("the handler panicked, as asked");
                }
                Ok::<_, Infallible>(Some(frame))
            });
            server.run(panicky, stop).await;
        }
        "json" => {
            let json = handler_fn(|value: Json<serde_json::Value>, _conn| async move {
                Ok::<_, Infallible>(Some(value))
            });
            server.run(json, stop).await;
        }
        other => return Err(format!("no server kind {other:?}")),
    }
    Ok(())
}

/// A TLS acceptor with a self-signed certificate for 127.0.0.1, made now;
/// the certificate is written (PEM) to `path` for clients to trust.
fn self_signed(path: &std::path::Path) -> Result<enchufe::tls::Acceptor, String> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .map_err(|e| e.to_string())?;
    let pem = cert.cert.pem();
    std::fs::write(path, &pem).map_err(|e| format!("{}: {e}", path.display()))?;
    enchufe::tls::Acceptor::from_pem(pem.as_bytes(), cert.key_pair.serialize_pem().as_bytes())
        .map_err(|e| e.to_string())
}

/// Connects to `addr` and sends half a frame (`half`) or a whole request,
/// prints `ready`, then waits to be killed.
pub(crate) async fn hold(addr: &str, half: bool) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut frame = Vec::new();
    if half {
        frame.extend_from_slice(&(1u32 << 20).to_be_bytes());
        frame.extend_from_slice(&[7; 1000]);
    } else {
        frame.extend_from_slice(&5u32.to_be_bytes());
        frame.extend_from_slice(b"hello");
    }
    stream.write_all(&frame).await.map_err(|e| e.to_string())?;
    println!("ready");
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
    Ok(())
}
