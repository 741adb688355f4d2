//! The front door: one listener, several protocols. The first bytes of an
//! accepted connection say what it speaks, and it goes to that protocol's
//! door with every limit the listener has (the permit taken before
//! `accept`, the per-address cap, the handshake deadline, TLS, the
//! tracker that shutdown waits for):
//!
//! ```text
//!  accepted (after TLS, if the listener has it)
//!    first byte within detect_timeout?
//!      none (a client waiting for a greeting), or not 'A'..='Z'
//!                                  -> frames (the server's Handler)
//!      'A'..='Z' (an HTTP method)  -> the request head, whole, within
//!                                     handshake_timeout and HEAD_LIMIT
//!          Upgrade: websocket, and a web door  -> WebSocket -> frames
//!          otherwise, an HTTP door             -> the HTTP door
//!          otherwise, a web door               -> its page, or a 404
//! ```
//!
//! A frame's first byte is the high byte of its length: 'A' (0x41) there
//! declares over 1 GiB, far over any frame limit a server that also speaks
//! HTTP would set, so no frame is ever taken for HTTP (a server whose
//! `max_frame_length` reaches 0x4100_0000 serves no door; see
//! [`Server::http`](crate::Server::http)). The frame path pays nothing when
//! no door is set: the listener does not look at the bytes at all. With a
//! door, a TCP connection is peeked (nothing is consumed, so frames are
//! still read straight from the socket); a TLS stream cannot be peeked, so
//! its first byte is read and given back in front of the stream
//! ([`Rewind`]).

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enchufe_engine::net::{BoxFuture, BoxIo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::rewind::Rewind;

/// The most bytes of an HTTP request head the front door reads to tell a
/// WebSocket upgrade from another request: the HTTP door's own default
/// head limit (16 KiB). A longer head goes to the HTTP door as it is, whose
/// parser refuses it with its own status.
pub const HEAD_LIMIT: usize = 16 * 1024;

/// A protocol served on the server's listener beside frames: what
/// [`Server::http`](crate::Server::http) takes. The `enchufe-http` crate's
/// handlers implement it (`enchufe::http::door`); a door of your own can
/// serve any protocol whose first byte is an ASCII capital letter.
pub trait Door: Debug + Send + Sync + 'static {
    /// Serves one connection until it ends. `stop` is cancelled when the
    /// server begins to shut down: finish the request in hand and close.
    /// The future is dropped when the shutdown's grace period is over.
    fn serve(&self, io: BoxIo, peer: SocketAddr, stop: CancellationToken)
        -> BoxFuture<'static, ()>;
}

/// The doors of a listener besides frames.
#[derive(Debug, Clone, Default)]
pub(crate) struct Doors {
    pub(crate) http: Option<Arc<dyn Door>>,
    #[cfg(feature = "ws")]
    pub(crate) web: Option<Arc<crate::ws::Options>>,
    /// Every connection goes to the HTTP door, without looking (an
    /// HTTP-only server: its parser answers whatever arrives).
    pub(crate) http_only: bool,
}

impl Doors {
    /// Whether any door is set: otherwise the listener never looks.
    pub(crate) fn any(&self) -> bool {
        #[cfg(feature = "ws")]
        if self.web.is_some() {
            return true;
        }
        self.http.is_some()
    }
}

/// What the first bytes said.
pub(crate) enum Route<S> {
    /// Frames, on the stream as it is.
    Frames(S),
    /// Frames, on a stream that had to be wrapped (bytes given back, or a
    /// WebSocket).
    FramesBoxed(BoxIo),
    /// Served by a door (or refused): nothing more to do.
    Gone,
}

/// Whether a first byte starts an HTTP request (a method is a token of
/// capital letters in practice: GET, POST, PUT, DELETE, HEAD, OPTIONS...).
pub(crate) fn is_http_start(byte: u8) -> bool {
    byte.is_ascii_uppercase()
}

/// What a connection needs to be routed.
pub(crate) struct Routing<'a> {
    pub(crate) doors: &'a Doors,
    pub(crate) detect: Duration,
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) deadline: Duration,
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) max_frame_length: usize,
    pub(crate) peer: SocketAddr,
    pub(crate) shutdown: &'a CancellationToken,
    pub(crate) abort: &'a CancellationToken,
    pub(crate) counters: &'a crate::stats::Counters,
}

impl Routing<'_> {
    /// Routes a TCP connection: its first byte is peeked, not read.
    pub(crate) async fn tcp(self, stream: TcpStream) -> Route<TcpStream> {
        if self.doors.http_only {
            return self.http(Box::pin(stream), Vec::new()).await;
        }
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.detect, stream.peek(&mut first)).await {
            Ok(Ok(1)) if is_http_start(first[0]) => {}
            // No byte yet (a client waiting for a greeting), EOF, an error,
            // or not HTTP: frames, which report all of these as they do.
            _ => return Route::Frames(stream),
        }
        self.http(Box::pin(stream), Vec::new()).await
    }

    /// Routes a wrapped stream (TLS): its first byte is read and given
    /// back in front of it.
    pub(crate) async fn boxed(self, mut io: BoxIo) -> Route<BoxIo> {
        if self.doors.http_only {
            return self.http(io, Vec::new()).await;
        }
        let mut first = [0u8; 1];
        let n = match tokio::time::timeout(self.detect, io.read(&mut first)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => 0,
        };
        if n == 1 && is_http_start(first[0]) {
            return self.http(io, first.to_vec()).await;
        }
        if n == 0 {
            return Route::Frames(io);
        }
        Route::FramesBoxed(Box::pin(Rewind::new(first.to_vec(), io)))
    }

    /// An HTTP request arrived (`read`: its bytes already read from `io`).
    async fn http<S>(self, io: BoxIo, read: Vec<u8>) -> Route<S> {
        #[cfg(feature = "ws")]
        if let Some(web) = self.doors.web.clone() {
            // With no HTTP door, the WebSocket door answers every request
            // (its page, 404, 400) and needs no look at the head first.
            let io = if self.doors.http.is_none() {
                Rewind::new(read, io)
            } else {
                match read_head(io, read, self.deadline, self.shutdown).await {
                    Head::Whole(head, io) if !is_upgrade(&head) => {
                        return self.through_http_door(Box::pin(io)).await
                    }
                    Head::Whole(_, io) => io,
                    Head::TooSlow(io) => {
                        too_slow(io).await;
                        return Route::Gone;
                    }
                    Head::Gone => return Route::Gone,
                }
            };
            let accepted = crate::ws::accept(io, &web, self.max_frame_length, self.deadline);
            return match accepted.await {
                Ok(crate::ws::Accepted::WebSocket(ws)) => Route::FramesBoxed(Box::into_pin(ws)),
                Ok(_) => Route::Gone,
                Err(e) => {
                    crate::layer::rare_warn(
                        &self.counters.ws_rejected,
                        &e,
                        "WebSocket upgrade refused",
                    );
                    Route::Gone
                }
            };
        }
        self.through_http_door(Box::pin(Rewind::new(read, io)))
            .await
    }

    async fn through_http_door<S>(self, io: BoxIo) -> Route<S> {
        if let Some(door) = &self.doors.http {
            crate::stats::Counters::add(&self.counters.http_connections, 1);
            // Past the shutdown's grace period the door's work is dropped,
            // as a frame connection's is.
            tokio::select! {
                () = door.serve(io, self.peer, self.shutdown.clone()) => {}
                () = self.abort.cancelled() => {}
            }
        }
        Route::Gone
    }
}

/// How reading a request head at the front door ended.
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
enum Head {
    /// The whole head (what was read, and the stream with it given back).
    Whole(Vec<u8>, Rewind<BoxIo>),
    /// Not whole within the deadline: the client is answered `408`.
    TooSlow(BoxIo),
    /// The client went away, or shutdown began.
    Gone,
}

/// Reads an HTTP request head (up to its blank line, at most
/// [`HEAD_LIMIT`] bytes, within `deadline`). A head over the limit is
/// handed on as `Whole` for the door to refuse with its own status.
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
async fn read_head(
    mut io: BoxIo,
    mut read: Vec<u8>,
    deadline: Duration,
    shutdown: &CancellationToken,
) -> Head {
    let reading = async {
        let mut chunk = [0u8; 2048];
        while !has_blank_line(&read) && read.len() < HEAD_LIMIT {
            let room = chunk.len().min(HEAD_LIMIT - read.len());
            match io.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    let whole = tokio::select! {
        whole = tokio::time::timeout(deadline, reading) => whole,
        () = shutdown.cancelled() => return Head::Gone,
    };
    match whole {
        Ok(true) => Head::Whole(read.clone(), Rewind::new(read, io)),
        Ok(false) => Head::Gone,
        Err(_) => Head::TooSlow(io),
    }
}

/// Answers a client whose head did not arrive in time, as the HTTP door
/// answers one (`408`, then close), within one second.
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
async fn too_slow(mut io: BoxIo) {
    use tokio::io::AsyncWriteExt;
    const REPLY: &[u8] =
        b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 4\r\n\r\n408\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(REPLY).await?;
        io.shutdown().await
    })
    .await;
}

fn has_blank_line(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Whether a request head asks for a WebSocket (`Upgrade: websocket`,
/// any case). A head that does not parse is not an upgrade: the HTTP door
/// refuses it.
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
pub(crate) fn is_upgrade(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    request.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && std::str::from_utf8(h.value).is_ok_and(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_never_taken_for_http() {
        // A frame's first byte is its length's high byte: under 1 GiB it
        // is at most 0x3f, never a capital letter.
        for len in [0u32, 4, 8 << 20, (1 << 30) - 1] {
            assert!(!is_http_start(len.to_be_bytes()[0]), "{len}");
        }
        for method in ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            assert!(is_http_start(method.as_bytes()[0]));
        }
        // A TLS ClientHello starts 0x16: not HTTP.
        assert!(!is_http_start(0x16));
    }

    #[test]
    fn an_upgrade_is_told_from_a_request() {
        let upgrade =
            b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
        assert!(is_upgrade(upgrade));
        assert!(!is_upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!is_upgrade(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"));
        assert!(!is_upgrade(b"not http at all\r\n\r\n"));
    }
}
