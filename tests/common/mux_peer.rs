//! One scripted multiplexed peer for every test that speaks the
//! multiplexed profile byte by byte (`docs/PROTOCOL.md`): the client side
//! (`connect`: our hello, then the server's, checked) or the server side
//! (`accept`/`answer`: our hello answering, then the client's), then frames
//! as `(Header, body)`.
//!
//! The root package's tests use it as `common::mux_peer`; a crate's own
//! tests include this file with `#[path]` (it names only `enchufe_framing`,
//! which every crate that speaks frames depends on).
// Each test binary uses a part of it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use enchufe_framing::mux::{Header, Hello, Kind};
use enchufe_framing::Transport;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A hand-written multiplexed peer, over TCP unless said otherwise.
pub struct MuxPeer<Io = TcpStream>(pub Transport<Io>);

impl MuxPeer {
    /// Dials `addr` as a client: sends an empty-id hello and checks that
    /// the server's hello answers it (the acceptor flag set).
    pub async fn connect(addr: SocketAddr) -> MuxPeer {
        let stream = TcpStream::connect(addr).await.unwrap();
        // Without it, Nagle holds small frames sent back to back until the
        // first is acknowledged: "sent" would not mean sent.
        stream.set_nodelay(true).unwrap();
        let mut t = Transport::new(stream);
        t.send(Hello::new("").encode().unwrap()).await.unwrap();
        let hello = t.recv().await.unwrap().expect("the server's hello");
        assert_eq!(Hello::decode(&hello).unwrap(), Hello::new("").answering());
        MuxPeer(t)
    }

    /// Accepts one connection on `listener` as a server: answers with our
    /// hello and reads the client's.
    pub async fn accept(listener: &TcpListener) -> MuxPeer {
        MuxPeer::answer(listener.accept().await.unwrap().0).await
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> MuxPeer<Io> {
    /// The server's side of an accepted `io`: sends our hello (answering),
    /// then reads the client's, which must be a valid hello.
    pub async fn answer(io: Io) -> MuxPeer<Io> {
        let mut t = Transport::new(io);
        t.send(Hello::new("").answering().encode().unwrap())
            .await
            .unwrap();
        let theirs = t.recv().await.unwrap().expect("the client's hello");
        Hello::decode(&theirs).expect("a valid client hello");
        MuxPeer(t)
    }

    /// `io` whose hellos were exchanged by hand already: frames from here.
    pub fn over(io: Io) -> MuxPeer<Io> {
        MuxPeer(Transport::new(io))
    }

    /// Sends one frame of `kind` with `id`.
    pub async fn send(&mut self, kind: Kind, id: u64, body: impl AsRef<[u8]>) {
        self.0
            .send(Bytes::from(payload(kind, id, body.as_ref())))
            .await
            .unwrap();
    }

    /// Queues one frame of `kind` with `id` without flushing: frames fed
    /// back to back leave in one write at the next `send` or `flush`.
    pub async fn feed(&mut self, kind: Kind, id: u64, body: impl AsRef<[u8]>) {
        self.0
            .feed(Bytes::from(payload(kind, id, body.as_ref())))
            .await
            .unwrap();
    }

    /// Writes what [`MuxPeer::feed`] queued.
    pub async fn flush(&mut self) {
        self.0.flush().await.unwrap();
    }

    /// The next frame, its body as text (lossy); `None` at a clean close.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<(Header, String)> {
        let (header, body) = self.recv_bytes().await?;
        Some((header, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The next frame, its body as bytes; `None` at a clean close.
    /// Cancel-safe.
    pub async fn recv_bytes(&mut self) -> Option<(Header, BytesMut)> {
        let frame = self.0.recv().await.unwrap()?;
        Some(Header::split(frame).expect("a well-formed multiplexed frame"))
    }

    /// The next frame that is not a ping (a peer link pings).
    pub async fn recv_no_ping(&mut self) -> Option<(Header, String)> {
        loop {
            let frame = self.recv().await?;
            if frame.0.kind != Kind::Ping {
                return Some(frame);
            }
        }
    }

    /// The next frame, which must be of `kind`: its id and body as text.
    pub async fn expect(&mut self, kind: Kind) -> (u64, String) {
        let (header, body) = self.recv_bytes().await.expect("a frame, not the end");
        assert_eq!(header.kind, kind, "unexpected frame {header:?}");
        (header.id, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The next frame, which must be a request: its id and body.
    pub async fn next_request(&mut self) -> (u64, String) {
        self.expect(Kind::Request).await
    }

    /// Reads until the other end closes; it must send nothing more.
    pub async fn expect_end(&mut self) {
        if let Some((header, _)) = self.recv_bytes().await {
            panic!("expected the other end to close, got {header:?}");
        }
    }
}

/// A multiplexed frame's payload: the 9-byte header, then the body.
pub fn payload(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
    let mut payload = Header { kind, id }.to_bytes().to_vec();
    payload.extend_from_slice(body);
    payload
}

/// `payload` as it goes on the wire: its 4-byte length, then itself.
pub fn prefixed(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// A multiplexed frame as it goes on the wire: the length, the header, the
/// body (for tests that write raw bytes to a socket).
pub fn wire_frame(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
    prefixed(&payload(kind, id, body))
}
