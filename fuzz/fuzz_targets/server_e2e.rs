//! The whole server: its accept loop, connection driver and both profiles'
//! tasks, fed by a client whose bytes and write boundaries the input
//! chooses. The server cannot be given an in-memory I/O without a new API,
//! so the bytes go through a Unix socket on this machine (one server per
//! profile, started once per fuzzing process).
//!
//! Input: byte 0 picks the server (bit 0: multiplexed); then, repeatedly, a
//! control byte below `0xf0` sends the next 1 to 64 bytes as one write,
//! `0xf0..` lets the server run before the next write. Then the client
//! half-closes and reads until the server closes.
//!
//! Checked:
//! - the server closes the connection within 5 s of the client's
//!   half-close, whatever came before (no hang), and keeps accepting;
//! - plain (an echo handler, 1 KiB frame limit): nothing comes back when the
//!   first frame is a multiplexed hello (the server refuses it); otherwise
//!   the bytes that come back are exactly the frames of a reference parser
//!   of what was sent, echoed
//!   (a prefix of them when a frame over the limit makes the server stop
//!   reading: the socket may then be reset with replies unread);
//! - multiplexed (the same handler): what comes back is whole frames,
//!   the first of them the server's hello.
//!
//! A panic in any server task aborts the process (libfuzzer-sys's hook),
//! so it is found even though Tokio would catch it.
#![no_main]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use enchufe_framing::mux::{is_hello, Hello};
use enchufe_framing::Bytes;
use enchufe_fuzz::{reference_frames, End, Script};
use enchufe_server::{handler_fn, Config, Profile, Server, ServerHandle};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

const MAX_FRAME: usize = 1024;
/// How long the server may take to close after the client's half-close.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

struct Servers {
    rt: Runtime,
    plain: PathBuf,
    mux: PathBuf,
    _handles: [ServerHandle; 2],
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!("enchufe-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a socket directory");
        let (plain, mux) = (dir.join("plain.sock"), dir.join("mux.sock"));
        let start = |path: &PathBuf, profile: Profile| {
            let _ = std::fs::remove_file(path);
            let config = Config::default()
                .max_frame_length(MAX_FRAME)
                .profile(profile);
            Server::bind_unix(path)
                .expect("bind a Unix socket")
                .with_config(config)
                .serve(handler_fn(|body: Bytes, _conn| async move {
                    Ok::<_, Infallible>(Some(body))
                }))
        };
        let handles = rt.block_on(async {
            [
                start(&plain, Profile::Plain),
                start(&mux, Profile::Multiplexed),
            ]
        });
        Servers {
            rt,
            plain,
            mux,
            _handles: handles,
        }
    })
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script::new(data);
    let Some(mode) = script.byte() else { return };
    let mux = mode & 1 == 1;
    let servers = servers();
    let path = if mux { &servers.mux } else { &servers.plain };

    let (sent, received) = servers.rt.block_on(async {
        let mut stream = UnixStream::connect(path).await.expect("the server accepts");
        let (mut rx, mut tx) = stream.split();
        let mut sent = Vec::new();
        let mut received = Vec::new();
        let write_side = async {
            while let Some(control) = script.byte() {
                if control >= 0xf0 {
                    tokio::task::yield_now().await;
                    continue;
                }
                let chunk = script.take(usize::from(control) % 64 + 1);
                // The server may have closed (a frame over the limit): what
                // it did not take is simply not sent.
                if tx.write_all(chunk).await.is_err() {
                    break;
                }
                sent.extend_from_slice(chunk);
            }
            let _ = tx.shutdown().await;
        };
        let read_side = async {
            let mut buf = [0u8; 4096];
            loop {
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        };
        let both = async { tokio::join!(write_side, read_side) };
        if tokio::time::timeout(CLOSE_LIMIT, both).await.is_err() {
            panic!(
                "the {} server did not close the connection within {CLOSE_LIMIT:?}",
                if mux { "multiplexed" } else { "plain" }
            );
        }
        (sent, received)
    });

    let (replies, how) = reference_frames(&received, usize::MAX);
    assert_eq!(how, End::Clean, "the server wrote a cut frame");
    if mux {
        if let Some(first) = replies.first() {
            Hello::decode(first).expect("the server's first frame is its hello");
        }
        return;
    }
    let (frames, end) = reference_frames(&sent, MAX_FRAME);
    if frames.first().is_some_and(|f| is_hello(f)) {
        // A multiplexed hello as the first frame: a server pinned to the
        // plain profile refuses it (a profile mismatch) and answers nothing.
        assert!(received.is_empty(), "a plain server answered a hello");
        return;
    }
    let echoed: Vec<u8> = frames.iter().flat_map(|f| frame(f)).collect();
    match end {
        End::TooLarge { .. } => assert!(
            echoed.starts_with(&received),
            "not a prefix of the echo of what was sent"
        ),
        End::Clean | End::Eof { .. } => assert!(
            received == echoed,
            "got {} bytes back, expected {}",
            received.len(),
            echoed.len()
        ),
    }
});
