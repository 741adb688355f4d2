//! One scripted multiplexed peer for every test that speaks the
//! multiplexed profile byte by byte (`docs/PROTOCOL.md`): the client side
//! (`connect`: our hello, then the server's, checked) or the server side
//! (`accept`: our hello answering, then the client's), then frames as
//! `(Header, body)`.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use enchufe::framing::mux::{Header, Hello, Kind};
use enchufe::framing::Transport;
use tokio::net::{TcpListener, TcpStream};

/// A hand-written multiplexed peer over TCP.
pub struct MuxPeer(pub Transport<TcpStream>);

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
        let mut t = Transport::new(listener.accept().await.unwrap().0);
        t.send(Hello::new("").answering().encode().unwrap())
            .await
            .unwrap();
        Hello::decode(&t.recv().await.unwrap().expect("the client's hello")).unwrap();
        MuxPeer(t)
    }

    /// Sends one frame of `kind` with `id`.
    pub async fn send(&mut self, kind: Kind, id: u64, body: impl AsRef<[u8]>) {
        self.0
            .send(Bytes::from(payload(kind, id, body.as_ref())))
            .await
            .unwrap();
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
        Some(Header::split(frame).unwrap())
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

    /// The next frame, which must be a request: its id and body.
    pub async fn next_request(&mut self) -> (u64, String) {
        let (header, body) = self.recv().await.expect("a request");
        assert_eq!(header.kind, Kind::Request);
        (header.id, body)
    }
}

/// A multiplexed frame's payload: the 9-byte header, then the body.
pub fn payload(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
    let mut payload = Header { kind, id }.to_bytes().to_vec();
    payload.extend_from_slice(body);
    payload
}

/// A multiplexed frame as it goes on the wire: the length, the header, the
/// body (for tests that write raw bytes to a socket).
pub fn wire_frame(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
    let payload = payload(kind, id, body);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}
