//! The harness's correctness check, checked: the generator against the
//! floor in-process, and against echo servers that lie.

use std::convert::Infallible;

use enchufe::{handler_fn, Server};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use super::*;
use crate::floor;

/// Frames per connection in these tests: enough to wrap the payload
/// cycle several times and to fill every window.
const FRAMES: u64 = 60;

fn spec(kind: Kind, addr: SocketAddr) -> Spec {
    Spec {
        kind,
        addr,
        conns: 2,
        depth: 4,
        size: 100,
        secs: 0.0,
        frames: Some(FRAMES),
        latency: true,
    }
}

/// The floor, in this process, on an OS-chosen port.
async fn floor() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(floor::serve(listener));
    addr
}

/// An echo server that gets frame `bad` of each connection wrong: it
/// sends `spoil(frame)` in its place; every other frame is echoed
/// faithfully.
async fn liar(bad: u64, spoil: fn(Bytes) -> Vec<Bytes>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, codec());
                let mut n = 0;
                while let Some(Ok(frame)) = framed.next().await {
                    let frame = frame.freeze();
                    let out = if n == bad { spoil(frame) } else { vec![frame] };
                    n += 1;
                    for echo in out {
                        if framed.send(echo).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn flip_a_bit(frame: Bytes) -> Vec<Bytes> {
    let mut bytes = frame.to_vec();
    bytes[57] ^= 0x10;
    vec![bytes.into()]
}

fn drop_it(_: Bytes) -> Vec<Bytes> {
    Vec::new()
}

/// Bounds a test that would otherwise hang on a bug; not a timing check.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("load run hung")
}

#[tokio::test]
async fn generator_checks_every_echo_of_the_floor() {
    let report = bounded(run(&spec(Kind::Frames, floor().await)))
        .await
        .unwrap();
    assert_eq!(report.frames, 2 * FRAMES);
    assert!(report.latency_us.is_some());
}

#[tokio::test]
async fn generator_catches_a_flipped_bit() {
    let err = bounded(run(&spec(Kind::Frames, liar(7, flip_a_bit).await)))
        .await
        .unwrap_err();
    match err {
        Error::Mismatch { frame, detail, .. } => {
            assert_eq!(frame, 7);
            assert!(detail.starts_with("byte 57 of 100"), "{detail}");
        }
        other => panic!("expected a mismatch, got {other}"),
    }
}

#[tokio::test]
async fn generator_catches_a_dropped_echo() {
    // The echo of frame 7 never comes, so frame 8's arrives in its place.
    let err = bounded(run(&spec(Kind::Frames, liar(7, drop_it).await)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Mismatch { frame: 7, .. }),
        "expected a mismatch at frame 7, got {err}"
    );
}

#[tokio::test]
async fn http_generator_checks_every_reply_of_hyper_and_enchufe() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::hyper_hello::serve(listener, true));
    let mut pipelined = spec(Kind::Http, addr);
    pipelined.depth = 16;
    let report = bounded(run(&pipelined)).await.unwrap();
    assert_eq!(report.frames, 2 * FRAMES);

    // enchufe's HTTP server, keep-alive one request at a time.
    let mut one = spec(Kind::Http, hola_server(|name| name).await);
    one.depth = 1;
    let report = bounded(run(&one)).await.unwrap();
    assert_eq!(report.frames, 2 * FRAMES);

    // A server whose reply to request 7 is another's: caught.
    let liar = hola_server(|name| if name == "7" { "8".to_owned() } else { name }).await;
    let err = bounded(run(&spec(Kind::Http, liar))).await.unwrap_err();
    assert!(matches!(err, Error::Mismatch { frame: 7, .. }), "got {err}");
}

/// An enchufe HTTP server answering `GET /hola/N` with `hola, {name(N)}`.
async fn hola_server(name: fn(String) -> String) -> SocketAddr {
    let hello = enchufe::http::handler_fn(move |req: enchufe::http::Request| async move {
        let n = req.path().strip_prefix("/hola/").unwrap_or("").to_owned();
        enchufe::http::Response::text(200, format!("hola, {}\n", name(n)))
    });
    let server = enchufe::http::Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(hello, std::future::pending()));
    addr
}

#[tokio::test]
async fn client_loops_check_their_echoes_too() {
    let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
        |frame: Bytes, _conn| async move { Ok::<_, Infallible>(Some(frame)) },
    ));
    let report = bounded(run(&spec(Kind::Client, server.local_addr())))
        .await
        .unwrap();
    assert_eq!(report.frames, 2 * FRAMES);
    server.shutdown().await;

    let err = bounded(run(&spec(Kind::Client, liar(3, flip_a_bit).await)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "got {err}");
}

#[tokio::test]
async fn pipelines_and_the_mux_generator_check_their_echoes() {
    let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
        |frame: Bytes, _conn| async move { Ok::<_, Infallible>(Some(frame)) },
    ));
    for kind in [
        Kind::ClientPipeline,
        Kind::ClientMuxPipeline,
        Kind::FramesMux,
    ] {
        let mut spec = spec(kind, server.local_addr());
        spec.latency = false;
        let report = bounded(run(&spec)).await.unwrap();
        assert_eq!(report.frames, 2 * FRAMES, "{kind:?}");
    }
    server.shutdown().await;

    let err = bounded(run(&spec(Kind::ClientPipeline, liar(3, flip_a_bit).await)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { frame: 3, .. }), "got {err}");
}
