//! The doors of one port (frames, HTTP, WebSocket) as attackers and
//! ordinary clients see them: what a connection of each door sends to
//! open, to idle, to trickle and to leave a message unfinished, and the
//! ordinary client of each door.
//!
//! The attackers write their bytes by hand (a WebSocket frame is a header
//! masked with the key 0, so the payload goes as it is); the ordinary
//! clients are what users connect with: enchufe's `Client`, a hand-written
//! HTTP/1.1 `GET` and `curl`, and tokio-tungstenite.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use enchufe::client::Config as ClientConfig;
use enchufe::{Client, Profile};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::kit::{connect_from, frame, FRAME};

/// A door of the one-port server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Door {
    /// Length-prefixed frames, the server's own protocol.
    Frames,
    /// HTTP/1.1, through `Server::http`.
    Http,
    /// WebSocket, through `Server::web`: its messages are frames.
    Ws,
    /// The same server behind TLS (`Server::tls`): the attackers never
    /// finish a handshake, the ordinary client sends a frame over TLS.
    Tls,
}

/// The certificate (PEM) the TLS door's ordinary client trusts: the one
/// the TLS server wrote at its start.
pub(crate) static TLS_CA: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A WebSocket upgrade request, the same for every client (the key is the
/// one of RFC 6455's example).
pub(crate) const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: enchufe\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";
/// The WebSocket opcodes the attackers send.
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
/// An HTTP request for `pong`, kept alive.
pub(crate) const GET: &[u8] = b"GET /ping HTTP/1.1\r\nHost: enchufe\r\n\r\n";

impl Door {
    /// The doors of the plain listener.
    pub(crate) const ALL: [Door; 3] = [Door::Frames, Door::Http, Door::Ws];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Door::Frames => "frames",
            Door::Http => "HTTP",
            Door::Ws => "WebSocket",
            Door::Tls => "TLS",
        }
    }

    /// What a door's clients send: its unit.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Door::Frames => "frame (1 byte/s)",
            Door::Http => "request head (1 byte/s)",
            Door::Ws => "fragmented message (a fragment a second)",
            Door::Tls => "handshake (1 byte/s)",
        }
    }

    /// The start of a unit the attacker never finishes, and what it then
    /// sends once a second: a frame announcing 8 MiB, a request head
    /// without its blank line, a WebSocket message of fragments without a
    /// last one, a TLS record announcing a 512-byte ClientHello.
    pub(crate) fn unfinished(self) -> (Vec<u8>, &'static [u8]) {
        match self {
            Door::Frames => ((FRAME as u32).to_be_bytes().to_vec(), &[1]),
            Door::Http => (b"GET / HTTP/1.1\r\nHost: enchufe\r\n".to_vec(), b"a"),
            // The continuation fragment: header (no FIN, masked, 1 byte,
            // key 0) and its byte.
            Door::Ws => (
                ws_frame(false, BINARY, b"part"),
                &[CONTINUATION, 0x81, 0, 0, 0, 0, 7],
            ),
            Door::Tls => (vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01], &[0]),
        }
    }
}

/// A client's WebSocket frame: masked with the key 0 (any key is valid,
/// and 0 leaves the payload as it is).
pub(crate) fn ws_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

/// The code of the first Close frame among the server's `frames`
/// (unmasked, as a server sends them), if there is one.
pub(crate) fn close_code(mut frames: &[u8]) -> Option<u16> {
    while frames.len() >= 2 {
        let (opcode, len) = (frames[0] & 0x0f, frames[1] & 0x7f);
        let (len, at) = match len {
            126 => (
                u16::from_be_bytes(frames.get(2..4)?.try_into().ok()?) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(frames.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            n => (usize::from(n), 2usize),
        };
        let payload = frames.get(at..at.checked_add(len)?)?;
        if opcode == CLOSE {
            return Some(u16::from_be_bytes(payload.get(..2)?.try_into().ok()?));
        }
        frames = &frames[at + len..];
    }
    None
}

/// Reads an HTTP response head, to its blank line (at most 16 KiB; what
/// follows in the same read, a short body, goes with it).
pub(crate) async fn response_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            return Err(io::Error::other("response head over 16 KiB"));
        }
        match stream.read(&mut buf).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    Ok(head)
}

/// Opens a connection of `door` from `from`: a WebSocket is upgraded;
/// with `served`, one request is answered first (a frame, an HTTP request
/// kept alive, a WebSocket message), so that the connection holds what a
/// served connection holds. A TLS connection is only connected (its
/// attackers write the handshake by hand, and never finish it).
pub(crate) async fn open(
    door: Door,
    from: Ipv4Addr,
    addr: SocketAddr,
    served: bool,
) -> io::Result<TcpStream> {
    let mut stream = connect_from(from, addr).await?;
    if door == Door::Ws {
        stream.write_all(UPGRADE).await?;
        if !response_head(&mut stream)
            .await?
            .starts_with(b"HTTP/1.1 101")
        {
            return Err(io::Error::other("upgrade refused"));
        }
    }
    if served {
        match door {
            Door::Frames => {
                stream.write_all(&frame(b"ping")).await?;
                stream.read_exact(&mut [0; 8]).await?;
            }
            Door::Http => {
                stream.write_all(GET).await?;
                response_head(&mut stream).await?;
            }
            Door::Ws => {
                stream.write_all(&ws_frame(true, BINARY, b"ping")).await?;
                stream.read_exact(&mut [0; 6]).await?;
            }
            Door::Tls => {}
        }
    }
    Ok(stream)
}

/// Holds `stream` until the server closes it (or a write fails), writing
/// `each` once a second if given; keeps the first 64 KiB it reads in `got`.
pub(crate) async fn hold(stream: &mut TcpStream, each: Option<&[u8]>, got: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) if got.len() < 64 << 10 => got.extend_from_slice(&buf[..n]),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_secs(1)), if each.is_some() => {
                if stream.write_all(each.unwrap_or_default()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// An attacker of the slowloris checks: opens a connection of `door` from
/// `from` and holds it, trickling an unfinished unit if `slow`, until the
/// server cuts it. Idle HTTP connections are kept alive after a request
/// (with no byte at all a connection is not HTTP yet); the others send
/// nothing once open. Counted in `live` while it is open. `None`: it could
/// not connect (and upgrade, or be served first) within 3 s.
pub(crate) async fn attacker(
    door: Door,
    from: Ipv4Addr,
    addr: SocketAddr,
    slow: bool,
    live: &AtomicUsize,
) -> Option<()> {
    let opened = tokio::time::timeout(
        Duration::from_secs(3),
        open(door, from, addr, !slow && door == Door::Http),
    );
    let mut stream = opened.await.ok()?.ok()?;
    live.fetch_add(1, Ordering::Relaxed);
    if slow {
        let (start, each) = door.unfinished();
        if stream.write_all(&start).await.is_ok() {
            hold(&mut stream, Some(each), &mut Vec::new()).await;
        }
    } else {
        hold(&mut stream, None, &mut Vec::new()).await;
    }
    live.fetch_sub(1, Ordering::Relaxed);
    Some(())
}

/// The ordinary client of `door`: connects from 127.0.0.1, sends one
/// request and waits for its reply. Returns the whole time taken, or
/// `None` if it was not served within `limit`.
pub(crate) async fn probe(door: Door, addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let served = tokio::time::timeout(limit, async {
        match door {
            Door::Frames => frames_ping(addr, ClientConfig::default(), limit).await,
            Door::Tls => {
                let ca = TLS_CA.lock().map(|ca| ca.clone()).unwrap_or_default();
                let tls = enchufe::tls::Connector::from_ca_pem(&ca).ok()?;
                frames_ping(addr, ClientConfig::default().tls(tls), limit).await
            }
            Door::Http => http_ping(addr).await,
            Door::Ws => ws_ping(addr).await,
        }
    })
    .await;
    matches!(served, Ok(Some(()))).then(|| start.elapsed())
}

pub(crate) async fn frames_ping(
    addr: SocketAddr,
    config: ClientConfig,
    limit: Duration,
) -> Option<()> {
    // Plain: the course's protocol, which every server the suite starts
    // serves (the echo server's automatic profile and the suite's own
    // servers pinned to plain alike).
    let config = config
        .profile(Profile::Plain)
        .connect_timeout(limit)
        .request_timeout(limit);
    let client = Client::connect_with(addr, config).await.ok()?;
    let reply: Bytes = client.request(Bytes::from_static(b"ping")).await.ok()?;
    (reply.as_ref() == b"ping").then_some(())
}

pub(crate) async fn http_ping(addr: SocketAddr) -> Option<()> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET /ping HTTP/1.1\r\nHost: enchufe\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.ok()?;
    (response.starts_with(b"HTTP/1.1 200") && response.ends_with(b"pong")).then_some(())
}

pub(crate) async fn ws_ping(addr: SocketAddr) -> Option<()> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .ok()?;
    ws.send(Message::binary(b"ping".to_vec())).await.ok()?;
    let reply = ws.next().await?.ok()?;
    (reply.into_data().as_ref() == b"ping").then_some(())
}

/// `curl` for `GET /ping` every 500 ms for `window`: the times curl
/// reported for the answers it got (`200`), and how many it tried; `None`
/// if curl is not installed.
pub(crate) async fn curl_for(addr: SocketAddr, window: Duration) -> Option<(Vec<Duration>, usize)> {
    let url = format!("http://{addr}/ping");
    let (mut times, mut tries) = (Vec::new(), 0);
    let start = Instant::now();
    while start.elapsed() < window {
        let next = Instant::now() + Duration::from_millis(500);
        tries += 1;
        let out = tokio::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "5"])
            .args(["-w", "%{http_code} %{time_total}", &url])
            .output()
            .await;
        match out {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => {}
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                if let Some(("200", secs)) = text.trim().split_once(' ') {
                    if let Ok(secs) = secs.parse::<f64>() {
                        times.push(Duration::from_secs_f64(secs));
                    }
                }
            }
        }
        tokio::time::sleep_until(next.into()).await;
    }
    Some((times, tries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_frames_are_masked_and_sized() {
        let small = ws_frame(true, BINARY, b"ping");
        assert_eq!(small, [0x82, 0x84, 0, 0, 0, 0, b'p', b'i', b'n', b'g']);
        let mid = ws_frame(false, BINARY, &[0; 300]);
        assert_eq!(&mid[..4], &[0x02, 0x80 | 126, 0x01, 0x2c]);
        assert_eq!(mid.len(), 4 + 4 + 300);
        let big = ws_frame(true, BINARY, &[0; 70_000]);
        assert_eq!(&big[..2], &[0x82, 0x80 | 127]);
        assert_eq!(big.len(), 2 + 8 + 4 + 70_000);
    }

    #[test]
    fn the_close_code_is_found_after_other_frames() {
        let mut frames = vec![0x82, 2, b'h', b'i'];
        frames.extend_from_slice(&[0x88, 2, 0x03, 0xf0]);
        assert_eq!(close_code(&frames), Some(1008));
        assert_eq!(close_code(&[0x82, 2, b'h']), None);
        assert_eq!(close_code(&[]), None);
    }
}
