//! WebSocket, so that a browser can join an enchufe server: the upgrade
//! ([`accept`]) and [`WsIo`], which turns a WebSocket into the byte stream
//! of length-prefixed frames that the connection driver reads.
//!
//! One WebSocket binary message is exactly one frame's **payload**, without
//! the 4-byte length (a WebSocket message has its own length). [`WsIo`] adds
//! the prefix to each message it reads and takes it off each frame it
//! writes, so everything above it (profiles, hello, handlers, limits) is the
//! same as over TCP. In JavaScript:
//!
//! ```text
//!  const ws = new WebSocket("ws://host:port/"); ws.binaryType = "arraybuffer";
//!  ws.send(new TextEncoder().encode("hola"));     // one frame: "hola"
//!  ws.onmessage = (e) => new Uint8Array(e.data);  // one frame's payload
//!
//!  WebSocket:  [binary message: 68 6f 6c 61]
//!  driver:     [00 00 00 04][68 6f 6c 61]          (WsIo adds/removes the length)
//! ```
//!
//! A text message is taken as its UTF-8 bytes, like a binary one. A message
//! over the frame limit is read as a frame header that declares its size,
//! so the framing layer rejects it as it rejects an oversize TCP frame.
//! Pings are answered by tungstenite; a close message is the end of the
//! stream; shutting down the write side sends a close message.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an HTTP request on a WebSocket listener did not become a WebSocket.
/// Each one is answered with an HTTP error status (when the socket still
/// works) and closes the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request head did not arrive within the deadline.
    #[error("no complete HTTP request within {0:?}")]
    Timeout(Duration),

    /// The request head is longer than [`Options::max_request_bytes`]
    /// (answered `431`).
    #[error("HTTP request head over {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },

    /// Not a valid WebSocket upgrade (answered `400`), or not HTTP at all.
    #[error("bad upgrade request: {0}")]
    BadRequest(String),

    /// The upgrade's `Origin` is not in [`Options::allowed_origins`]
    /// (answered `403`): a page from another site tried to connect.
    #[error("origin {0:?} not allowed")]
    Forbidden(String),

    /// A plain GET for a path with no page (answered `404`), or for the
    /// page when none is configured.
    #[error("no page at {0}")]
    NotFound(String),

    /// The socket failed or closed during the upgrade.
    #[error("i/o error during the upgrade: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// Whether the request head ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }
}

/// How a WebSocket listener answers HTTP. Every field has a default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// An HTML page answered to a plain `GET /` (without an upgrade), so a
    /// browser can load the page that opens the WebSocket from the same
    /// port. Default `None`: `GET /` is answered `404`.
    pub page: Option<Bytes>,
    /// The longest request head accepted, in bytes (default 8 KiB: a
    /// browser's upgrade request is under 1 KiB, cookies included in most
    /// cases; a longer head is answered `431` without reading more).
    pub max_request_bytes: usize,
    /// The `Origin`s whose pages may open a WebSocket here (`http://host:port`,
    /// as browsers send it), or `None` (the default) for any. A browser lets
    /// any page it shows open a WebSocket to any server, with the user's
    /// cookies; a server that trusts who connects should list its own pages'
    /// origins. Upgrades without an `Origin` header (not from a browser) are
    /// let in either way.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            page: None,
            max_request_bytes: 8 * 1024,
            allowed_origins: None,
        }
    }
}

impl Options {
    /// Sets [`Options::page`].
    #[must_use]
    pub fn page(mut self, html: impl Into<Bytes>) -> Self {
        self.page = Some(html.into());
        self
    }

    /// Sets [`Options::allowed_origins`].
    #[must_use]
    pub fn allowed_origins<S: Into<String>>(
        mut self,
        origins: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`Options::max_request_bytes`].
    #[must_use]
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }
}

/// What [`accept`] did with a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Accepted<Io> {
    /// It was a WebSocket upgrade: here is the stream of frames (boxed:
    /// the other variant is empty).
    WebSocket(Box<WsIo<Io>>),
    /// It was `GET /` and the page was sent; the connection is closed.
    Page,
}

/// Reads one HTTP request head from `io` (within `deadline`, at most
/// `options.max_request_bytes`), and either upgrades it to a WebSocket
/// whose messages are at most `max_message` bytes, or answers `GET /` with
/// the page, or answers an error status.
///
/// # Errors
/// [`Error`]: each after answering the status it names, when it could.
pub async fn accept<Io>(
    mut io: Io,
    options: &Options,
    max_message: usize,
    deadline: Duration,
) -> Result<Accepted<Io>>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let outcome = tokio::time::timeout(deadline, async {
        let head = read_head(&mut io, options.max_request_bytes).await;
        let answer = head.and_then(|head| respond(&head, options));
        match &answer {
            Ok(Answer::Upgrade(key)) => {
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    derive_accept_key(key.as_bytes())
                );
                io.write_all(response.as_bytes()).await?;
            }
            Ok(Answer::Page(page)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    page.len()
                );
                io.write_all(head.as_bytes()).await?;
                io.write_all(page).await?;
                io.shutdown().await?;
            }
            Err(e) => {
                let status = match e {
                    Error::TooLarge { .. } => Some("431 Request Header Fields Too Large"),
                    Error::NotFound(_) => Some("404 Not Found"),
                    Error::Forbidden(_) => Some("403 Forbidden"),
                    Error::BadRequest(_) => Some("400 Bad Request"),
                    _ => None,
                };
                if let Some(status) = status {
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    // Best effort: the error is the request's, not this write's.
                    let _ = io.write_all(response.as_bytes()).await;
                    let _ = io.shutdown().await;
                }
            }
        }
        answer
    })
    .await
    .map_err(|_| Error::Timeout(deadline))??;
    match outcome {
        Answer::Upgrade(_) => Ok(Accepted::WebSocket(Box::new(
            WsIo::from_raw(io, Role::Server, max_message).await,
        ))),
        Answer::Page(_) => Ok(Accepted::Page),
    }
}

/// What to answer a request head with.
enum Answer<'a> {
    /// Switch to WebSocket; the client's key.
    Upgrade(String),
    /// The page.
    Page(&'a Bytes),
}

/// Reads until the blank line that ends a request head, byte by byte past
/// what is buffered, so nothing after the head is consumed (a client may
/// not send before the `101`, but reading exactly the head costs nothing).
async fn read_head<Io: AsyncRead + Unpin>(io: &mut Io, limit: usize) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024.min(limit));
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= limit {
            return Err(Error::TooLarge { limit });
        }
        if io.read(&mut byte).await? == 0 {
            return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

fn respond<'a>(head: &[u8], options: &'a Options) -> Result<Answer<'a>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::BadRequest("incomplete head".into())),
        Err(e) => return Err(Error::BadRequest(format!("not HTTP: {e}"))),
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if request.method != Some("GET") {
        return Err(Error::BadRequest(format!(
            "method {} (only GET)",
            request.method.unwrap_or("?")
        )));
    }
    let path = request.path.unwrap_or("/");
    if !has_token("Upgrade", "websocket") {
        return match &options.page {
            Some(page) if path == "/" || path.starts_with("/?") => Ok(Answer::Page(page)),
            _ => Err(Error::NotFound(path.to_owned())),
        };
    }
    if !has_token("Connection", "upgrade") {
        return Err(Error::BadRequest(
            "Upgrade without Connection: upgrade".into(),
        ));
    }
    if let (Some(allowed), Some(origin)) = (&options.allowed_origins, header("Origin")) {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Err(Error::Forbidden(origin.to_owned()));
        }
    }
    if header("Sec-WebSocket-Version") != Some("13") {
        return Err(Error::BadRequest("Sec-WebSocket-Version is not 13".into()));
    }
    match header("Sec-WebSocket-Key") {
        Some(key) if !key.is_empty() => Ok(Answer::Upgrade(key.trim().to_owned())),
        _ => Err(Error::BadRequest("no Sec-WebSocket-Key".into())),
    }
}

/// A WebSocket as a byte stream of length-prefixed frames: each message
/// read comes out as `[len u32 BE][payload]`, each frame written goes out as
/// one binary message. See the [module docs](self).
pub struct WsIo<Io> {
    ws: WebSocketStream<Io>,
    /// The rest of the frame being read: its header, then its payload.
    header: [u8; 4],
    header_at: usize,
    payload: Bytes,
    /// Bytes written but not yet sent: at most the frame being assembled.
    out: BytesMut,
    /// A close message was read (or the stream ended): reads return EOF.
    eof: bool,
}

impl<Io> std::fmt::Debug for WsIo<Io> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("out", &self.out.len())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<Io> WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a WebSocket whose handshake is done (`role` says which end we
    /// are), accepting messages of at most `max_message` bytes.
    pub async fn from_raw(io: Io, role: Role, max_message: usize) -> WsIo<Io> {
        Self::new(WebSocketStream::from_raw_socket(io, role, Some(ws_config(max_message))).await)
    }

    /// Wraps a WebSocket opened elsewhere (say by `tokio_tungstenite::client_async`,
    /// for a Rust client over WebSocket; give it [`ws_config`] for the limit).
    pub fn new(ws: WebSocketStream<Io>) -> WsIo<Io> {
        WsIo {
            ws,
            header: [0; 4],
            header_at: 4,
            payload: Bytes::new(),
            out: BytesMut::new(),
            eof: false,
        }
    }

    /// Sends every complete frame in `out` as one message each.
    fn poll_send_frames(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(len) = frame_len(&self.out) {
            if self.out.len() < 4 + len {
                break;
            }
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(into_io)?;
            let mut frame = self.out.split_to(4 + len);
            frame.advance(4);
            Pin::new(&mut self.ws)
                .start_send(Message::Binary(frame.freeze()))
                .map_err(into_io)?;
        }
        Poll::Ready(Ok(()))
    }
}

/// tungstenite's limits for messages of at most `max_message` bytes.
pub fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

fn frame_len(out: &[u8]) -> Option<usize> {
    let header: [u8; 4] = out.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(header) as usize)
}

fn into_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<Io> AsyncRead for WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.header_at < 4 {
                let n = (4 - this.header_at).min(buf.remaining());
                buf.put_slice(&this.header[this.header_at..this.header_at + n]);
                this.header_at += n;
                if this.payload.is_empty() || buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if !this.payload.is_empty() {
                let n = this.payload.len().min(buf.remaining());
                buf.put_slice(&this.payload.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let payload = match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(Message::Close(_))) | None => {
                    this.eof = true;
                    continue;
                }
                Some(Ok(_)) => continue, // ping, pong: tungstenite answers pings
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                    // Read as a header that declares the size, so the framing
                    // layer rejects it like an oversize TCP frame. A size that
                    // does not fit, or whose first byte is printable (then the
                    // header could read as text), declares u32::MAX instead.
                    let declared = u32::try_from(size)
                        .ok()
                        .filter(|s| s.to_be_bytes()[0] < 0x20)
                        .unwrap_or(u32::MAX);
                    this.header = declared.to_be_bytes();
                    this.header_at = 0;
                    this.eof = true;
                    continue;
                }
                // The TCP connection ended without a close message: as a TCP
                // EOF between frames (a message is never cut), a clean end.
                Some(Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                )) => {
                    this.eof = true;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(into_io(e))),
            };
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            this.header = len.to_be_bytes();
            this.header_at = 0;
            this.payload = payload;
        }
    }
}

impl<Io> AsyncWrite for WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Frames already complete go first, so `out` never holds more than
        // the frame being assembled plus what the last call accepted.
        ready!(this.poll_send_frames(cx))?;
        // Take at most the rest of the current frame: one message per frame.
        let want = match frame_len(&this.out) {
            Some(len) => 4 + len - this.out.len(),
            None => 4 - this.out.len(),
        };
        let n = want.min(buf.len());
        this.out.extend_from_slice(&buf[..n]);
        // Send it now if it is complete and the socket has room; otherwise
        // the next write or flush sends it.
        if let Poll::Ready(Err(e)) = this.poll_send_frames(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_frames(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(into_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_frames(cx))?;
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(into_io(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};

    /// A WebSocket pair over an in-memory pipe, the server end as `WsIo`.
    async fn pair(
        max: usize,
    ) -> (
        WsIo<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WsIo::from_raw(a, Role::Server, max).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (server, client)
    }

    #[tokio::test]
    async fn messages_become_frames_and_back() {
        let (mut server, mut client) = pair(1024).await;
        client.send(Message::binary(&b"hola"[..])).await.unwrap();
        client.send(Message::text("ñ")).await.unwrap();
        let mut got = [0u8; 14];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\0\0\0\x04hola\0\0\0\x02\xc3\xb1");
        // Written in odd pieces, sent as one message per frame.
        for piece in [&b"\0\0"[..], b"\0\x03ab", b"c\0\0\0\0"] {
            server.write_all(piece).await.unwrap();
        }
        server.flush().await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(&b"abc"[..])
        );
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(&b""[..])
        );
        // Shutdown sends a close; the client's close ends our reads.
        server.shutdown().await.unwrap();
        assert!(matches!(client.next().await, Some(Ok(Message::Close(_)))));
        drop(client);
        assert_eq!(server.read(&mut got).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_oversize_message_reads_as_an_oversize_header() {
        let (mut server, mut client) = pair(8).await;
        client.send(Message::binary(vec![7u8; 9])).await.unwrap();
        let mut header = [0u8; 4];
        server.read_exact(&mut header).await.unwrap();
        assert_eq!(u32::from_be_bytes(header), 9);
    }

    #[test]
    fn upgrade_requests() {
        let options = Options::default().page("<p>hi</p>");
        let upgrade = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert!(
            matches!(respond(upgrade, &options), Ok(Answer::Upgrade(k)) if k == "dGhlIHNhbXBsZSBub25jZQ==")
        );
        assert!(matches!(
            respond(b"GET / HTTP/1.1\r\n\r\n", &options),
            Ok(Answer::Page(_))
        ));
        assert!(matches!(
            respond(b"GET /x HTTP/1.1\r\n\r\n", &options),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            respond(b"POST / HTTP/1.1\r\n\r\n", &options),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            respond(b"\0\0\0\x04hola\r\n\r\n", &options),
            Err(Error::BadRequest(_))
        ));
        let strict = Options::default().allowed_origins(["http://a.example"]);
        let from = |origin: &str| {
            format!("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: k\r\nOrigin: {origin}\r\n\r\n")
        };
        assert!(matches!(
            respond(from("http://a.example").as_bytes(), &strict),
            Ok(Answer::Upgrade(_))
        ));
        assert!(matches!(
            respond(from("http://evil.example").as_bytes(), &strict),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            respond(from("http://evil.example").as_bytes(), &options),
            Ok(Answer::Upgrade(_))
        ));
        let no_key = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert!(matches!(
            respond(no_key, &options),
            Err(Error::BadRequest(_))
        ));
    }
}
