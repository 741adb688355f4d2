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
//! A text message is taken as its UTF-8 bytes, like a binary one (after
//! checking they are UTF-8). A fragmented message is handed up whole, as
//! one frame; pings are answered; the peer's close frame is the end of the
//! stream and is echoed at shutdown.
//!
//! [`WsIo`] speaks RFC 6455 itself, as a server (tungstenite parses the
//! frame headers), so that it behaves on the wire as the driver does over
//! TCP:
//!
//! - **Batches.** One read hands up every whole message already read, so
//!   the driver answers a batch and flushes once; writes are encoded into
//!   an output that leaves at `poll_flush` (a socket write only when it
//!   holds 64 KiB, or for a body of 16 KiB or more, which is written from
//!   the caller's buffer behind it without a copy).
//! - **Limits.** A message over the limit (fragments added up) is refused
//!   on its header: it reads as a frame header declaring its size, so the
//!   framing layer rejects it as it rejects an oversize TCP frame. A
//!   message whose first frame arrived must be whole within
//!   [`Options::message_timeout`]. At most one pong is owed, and no frame is
//!   decoded while it has no room in the output: a peer that pings and
//!   never reads holds 64 KiB and one pong, and its writes stall.
//! - **Memory.** The read buffer grows with the bytes that arrived, to
//!   exactly one frame; it and the output are freed while the connection is
//!   quiet. An idle connection holds the struct (a few hundred bytes) and
//!   its socket: about 4 KiB a connection in a server, as over TCP.
//! - **Close codes.** Every refusal sends a close frame with its code
//!   before the connection ends (with the next flush, which the driver
//!   does before dropping a failed connection): 1002 protocol error, 1007
//!   text that is not UTF-8, 1008 a message not completed in time, 1009 a
//!   message over the limit. Shutting down sends 1001 (going away), or
//!   echoes the peer's close.
//!
//! ```text
//!  socket --> rbuf --decode: unmask, check, join fragments--> [len][payload]... --> driver
//!  socket <-- out <--encode: [0x82][len][payload] per frame-- [len][payload]... <-- driver
//!                 (+ one owed pong, + the close frame)
//! ```

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use std::future::Future;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong on a WebSocket listener: an HTTP request that did not
/// become a WebSocket (answered with an HTTP error status when the socket
/// still works), or a WebSocket this end closed for bad input (with a
/// close frame whose code [`Error::close_code`] gives; [`WsIo`]'s reads
/// fail with an `io::Error` carrying it). Either closes the connection.
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

    /// The peer broke RFC 6455 (what it did, for the log): an unmasked or
    /// reserved frame, a fragmented or long control frame, fragments out
    /// of order, a bad close frame. Closed with code 1002.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),

    /// A text message (or a close frame's reason) that is not UTF-8.
    /// Closed with code 1007.
    #[error("WebSocket text message is not UTF-8")]
    InvalidUtf8,

    /// A message whose first frame arrived was not complete within
    /// [`Options::message_timeout`]. Closed with code 1008.
    #[error("WebSocket message not completed within {0:?}")]
    MessageTimeout(Duration),
}

impl Error {
    /// Whether a deadline passed: the request head's or a message's.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_) | Error::MessageTimeout(_))
    }

    /// The close code (RFC 6455 §7.4.1) the connection was closed with,
    /// for the errors of an open WebSocket. A message over the limit is
    /// closed with 1009 and reported by the framing layer as an oversize
    /// frame; a server shutting down sends 1001.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Protocol(_) => Some(code::PROTOCOL),
            Error::InvalidUtf8 => Some(code::INVALID_DATA),
            Error::MessageTimeout(_) => Some(code::POLICY),
            _ => None,
        }
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
    /// Once the first frame of a message has arrived, the whole message
    /// must arrive within this, or the connection is closed with code 1008
    /// ([`Error::MessageTimeout`]): a client that starts a message and
    /// trickles it, or never sends its last fragment, holds its buffer
    /// this long at most. Default 30 s, the server's frame-completion
    /// deadline; `Server::ws` uses the server's `Config::frame_timeout`
    /// in its place, so one setting covers frames and messages. `None`:
    /// no deadline.
    pub message_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            page: None,
            max_request_bytes: 8 * 1024,
            allowed_origins: None,
            message_timeout: Some(Duration::from_secs(30)),
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

    /// Sets [`Options::message_timeout`].
    #[must_use]
    pub fn message_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.message_timeout = timeout;
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
        Answer::Upgrade(_) => Ok(Accepted::WebSocket(Box::new(WsIo::new(
            io,
            max_message,
            options.message_timeout,
        )))),
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

/// Most bytes of output [`WsIo`] holds before it writes to the socket from
/// [`poll_write`](AsyncWrite::poll_write) rather than taking more: the
/// driver's batch of replies (its own budget is 64 KiB by default) fits, so
/// a batch leaves in one write; a larger body goes through in pieces of
/// this size instead of being copied whole.
const WRITE_BUDGET: usize = 64 * 1024;

/// What a read from the socket asks room for: the driver's own chunk, so
/// a batch of small messages arrives in one read.
const READ_CHUNK: usize = 8 * 1024;

/// From this many payload bytes in one `poll_write`, they are written to
/// the socket straight from the caller's buffer (the driver's large bodies,
/// which it does not copy either) instead of being copied into the output.
const DIRECT: usize = 16 * 1024;

/// The longest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// Close codes (RFC 6455 §7.4.1) this end sends.
mod code {
    pub(super) const GOING_AWAY: u16 = 1001;
    pub(super) const PROTOCOL: u16 = 1002;
    pub(super) const INVALID_DATA: u16 = 1007;
    pub(super) const POLICY: u16 = 1008;
    pub(super) const TOO_BIG: u16 = 1009;
}

/// A WebSocket (server side) as a byte stream of length-prefixed frames:
/// each message read comes out as `[len u32 BE][payload]`, each frame
/// written goes out as one binary message. See the [module docs](self).
pub struct WsIo<Io> {
    io: Io,
    /// Bytes read from the socket and not yet decoded: at most one frame
    /// being completed (which is why it may hold up to the message limit)
    /// plus what came behind it. Freed while the connection is quiet.
    rbuf: BytesMut,
    /// The length prefix of the message being handed out; `head_at == 4`
    /// when none is.
    head: [u8; 4],
    head_at: usize,
    /// What follows that prefix.
    emit: Emit,
    /// A fragmented message (or its first fragments) being assembled: the
    /// driver sees a message only when it is whole, so its length can lead.
    partial: Option<Partial>,
    /// A data frame started arriving and its message is not whole: the
    /// completion deadline runs.
    started: bool,
    /// The frame limit: a longer message is refused on its header.
    max_message: usize,
    /// How long a started message may take to be whole.
    message_timeout: Option<Duration>,
    /// The completion deadline, made on the first message that has to wait
    /// for more bytes and reset for the next; armed only while `started`.
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The pong owed for the last ping, not yet in `out`. While one is
    /// owed, no further frame is decoded: a peer that pings and never reads
    /// is held to one pong plus `out`, and its writes stall.
    pong: Option<Bytes>,
    /// The peer's close frame arrived (its code, if it gave one): nothing
    /// more is decoded, reads end, and the close is echoed at shutdown.
    peer_closed: Option<Option<u16>>,
    /// This end refused the peer: the close frame to send at the next
    /// flush, then the error every read returns.
    refused: Option<Refusal>,
    /// The socket reached EOF.
    read_closed: bool,
    /// Encoded bytes waiting for the socket (at most about
    /// [`WRITE_BUDGET`]); freed while the connection is quiet.
    out: BytesMut,
    /// The length prefix of the frame being written, then how many of its
    /// payload bytes are still to come.
    whead: [u8; 4],
    whead_at: usize,
    wleft: usize,
    /// A close frame went out: nothing may follow it (RFC 6455 §5.5.1).
    close_sent: bool,
}

/// What follows a message's length prefix in [`WsIo::poll_read`].
enum Emit {
    Nothing,
    /// This many bytes at the front of `rbuf`, unmasked (the payload of a
    /// message that was one frame: no copy until the driver's buffer).
    Rbuf(usize),
    /// An assembled message.
    Buffered(Bytes),
}

/// A fragmented message so far.
struct Partial {
    /// Its first frame was text: it must be UTF-8.
    text: bool,
    /// How much of `data` is known to be UTF-8 (text only), so each
    /// fragment is checked once.
    checked: usize,
    data: BytesMut,
}

/// Why this end closes the connection: the close frame's code, and the
/// error reads report.
#[derive(Clone, Copy)]
enum Refusal {
    Protocol(&'static str),
    InvalidUtf8,
    Timeout(Duration),
    /// Over the message limit (the message's size so far): reads hand the
    /// driver a header declaring the size, so it fails as for an oversize
    /// TCP frame.
    TooBig(u64),
}

impl Refusal {
    fn code(self) -> u16 {
        match self {
            Refusal::Protocol(_) => code::PROTOCOL,
            Refusal::InvalidUtf8 => code::INVALID_DATA,
            Refusal::Timeout(_) => code::POLICY,
            Refusal::TooBig(_) => code::TOO_BIG,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::Protocol(_) => "protocol error",
            Refusal::InvalidUtf8 => "text message is not UTF-8",
            Refusal::Timeout(_) => "message not completed in time",
            Refusal::TooBig(_) => "message too big",
        }
    }

    fn error(self) -> io::Error {
        match self {
            Refusal::Protocol(what) => {
                io::Error::new(io::ErrorKind::InvalidData, Error::Protocol(what))
            }
            Refusal::InvalidUtf8 => io::Error::new(io::ErrorKind::InvalidData, Error::InvalidUtf8),
            Refusal::Timeout(limit) => {
                io::Error::new(io::ErrorKind::TimedOut, Error::MessageTimeout(limit))
            }
            Refusal::TooBig(_) => io::ErrorKind::InvalidData.into(),
        }
    }
}

/// What decoding the front of `rbuf` gave.
enum Step {
    /// A frame was taken; go on.
    Again,
    /// The next frame is not all here.
    NeedMore,
    /// A pong is owed and cannot be queued yet: decode nothing more.
    Blocked,
}

impl<Io> std::fmt::Debug for WsIo<Io> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("buffered", &self.rbuf.len())
            .field("out", &self.out.len())
            .field("peer_closed", &self.peer_closed.is_some())
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl<Io> WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps the server's end of a WebSocket whose handshake is done,
    /// accepting messages of at most `max_message` bytes, each to be
    /// complete within `message_timeout` of its first byte (`None`: no
    /// deadline).
    pub fn new(io: Io, max_message: usize, message_timeout: Option<Duration>) -> WsIo<Io> {
        WsIo {
            io,
            rbuf: BytesMut::new(),
            head: [0; 4],
            head_at: 4,
            emit: Emit::Nothing,
            partial: None,
            started: false,
            max_message,
            message_timeout,
            deadline: None,
            armed: false,
            pong: None,
            peer_closed: None,
            refused: None,
            read_closed: false,
            out: BytesMut::new(),
            whead: [0; 4],
            whead_at: 0,
            wleft: 0,
            close_sent: false,
        }
    }

    /// Sets the completion deadline of a message (`None`: none), as
    /// [`Options::message_timeout`] does for [`accept`].
    pub fn set_message_timeout(&mut self, timeout: Option<Duration>) {
        self.message_timeout = timeout;
    }

    /// Decodes the frame at the front of `rbuf`, if it is all there.
    fn decode(&mut self) -> Result<Step, Refusal> {
        let mut cursor = io::Cursor::new(&self.rbuf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Step::NeedMore),
            Err(_) => return Err(Refusal::Protocol("reserved opcode")),
        };
        let header_len = cursor.position() as usize;
        // The size is checked on the header, before any byte of the
        // payload is waited for; a message's fragments add up.
        if len > self.max_message as u64 {
            return Err(Refusal::TooBig(len));
        }
        let len = len as usize; // <= max_message: fits
        let data = match header.opcode {
            OpCode::Data(kind) => Some(kind),
            OpCode::Control(_) => None,
        };
        let total = self.partial.as_ref().map_or(0, |p| p.data.len()) + len;
        let in_order = data.map(|kind| matches!(kind, Data::Continue) == self.partial.is_some());
        let plain = header.mask.is_some() && !(header.rsv1 || header.rsv2 || header.rsv3);
        if self.rbuf.len() < header_len + len {
            if plain && in_order == Some(true) && total > self.max_message {
                // No need to wait for a fragment that cannot fit.
                return Err(Refusal::TooBig(total as u64));
            }
            self.started |= data.is_some();
            self.make_room(header_len + len);
            return Ok(Step::NeedMore);
        }
        // The rest is checked on the whole frame, in tungstenite's order,
        // so the two agree on every input (`tests/ws_against_tungstenite.rs`).
        let Some(mask) = header.mask else {
            return Err(Refusal::Protocol("unmasked frame from a client"));
        };
        if !plain {
            // No extension was negotiated.
            return Err(Refusal::Protocol("reserved bit set"));
        }
        match in_order {
            None if !header.is_final || len > MAX_CONTROL => {
                return Err(Refusal::Protocol("fragmented or long control frame"));
            }
            Some(false) => return Err(Refusal::Protocol("fragments out of order")),
            Some(true) if total > self.max_message => {
                return Err(Refusal::TooBig(total as u64));
            }
            _ => {}
        }
        if matches!(header.opcode, OpCode::Control(Control::Ping)) && self.pong.is_some() {
            return Ok(Step::Blocked);
        }
        self.rbuf.advance(header_len);
        unmask(&mut self.rbuf[..len], mask);
        match header.opcode {
            OpCode::Control(Control::Ping) => {
                self.pong = Some(Bytes::copy_from_slice(&self.rbuf[..len]));
                self.rbuf.advance(len);
            }
            OpCode::Control(Control::Close) => {
                let payload = self.rbuf.split_to(len);
                self.peer_closed = Some(close_code(&payload)?);
            }
            OpCode::Control(_) => self.rbuf.advance(len), // a pong
            OpCode::Data(kind) => {
                let text = match kind {
                    Data::Text => true,
                    Data::Binary => false,
                    _ => self.partial.as_ref().is_some_and(|p| p.text),
                };
                match (header.is_final, self.partial.take()) {
                    (true, None) => {
                        if text && std::str::from_utf8(&self.rbuf[..len]).is_err() {
                            return Err(Refusal::InvalidUtf8);
                        }
                        self.start_message(len, Emit::Rbuf(len));
                    }
                    (is_final, partial) => {
                        let mut partial = match partial {
                            Some(mut partial) => {
                                partial.data.extend_from_slice(&self.rbuf[..len]);
                                self.rbuf.advance(len);
                                partial
                            }
                            // A large first fragment keeps the buffer it
                            // was read into (no copy; `rbuf` then starts a
                            // new one). A small one is copied, so it does
                            // not pin a read buffer that also holds others.
                            None => Partial {
                                text,
                                checked: 0,
                                data: if len >= DIRECT {
                                    self.rbuf.split_to(len)
                                } else {
                                    let data = BytesMut::from(&self.rbuf[..len]);
                                    self.rbuf.advance(len);
                                    data
                                },
                            },
                        };

                        if text {
                            // Fail fast (RFC 6455 §8.1): a fragment may end
                            // inside a character, but not hold a wrong one.
                            match std::str::from_utf8(&partial.data[partial.checked..]) {
                                Ok(_) => partial.checked = partial.data.len(),
                                Err(e) if e.error_len().is_some() => {
                                    return Err(Refusal::InvalidUtf8)
                                }
                                Err(e) => partial.checked += e.valid_up_to(),
                            }
                        }
                        if !is_final {
                            self.partial = Some(partial);
                            self.started = true;
                            return Ok(Step::Again);
                        }
                        if text && partial.checked < partial.data.len() {
                            return Err(Refusal::InvalidUtf8); // a character cut short
                        }
                        let data = partial.data.freeze();
                        self.start_message(data.len(), Emit::Buffered(data));
                    }
                }
            }
        }
        Ok(Step::Again)
    }

    /// Room in `rbuf` for a frame of `need` bytes that is not all here: it
    /// doubles with the bytes that arrived (a declared length reserves
    /// nothing by itself), and the last step allocates exactly the frame,
    /// so an 8 MiB message holds 8 MiB, not the 16 MiB doubling would give.
    fn make_room(&mut self, need: usize) {
        if self.rbuf.capacity() > self.rbuf.len() {
            return;
        }
        let grow = READ_CHUNK.max(self.rbuf.len());
        if self.rbuf.len() + grow >= need {
            let mut exact = BytesMut::with_capacity(need);
            exact.extend_from_slice(&self.rbuf);
            self.rbuf = exact;
        } else {
            self.rbuf.reserve(grow);
        }
    }

    /// A whole message of `len` bytes is to be handed out.
    fn start_message(&mut self, len: usize, emit: Emit) {
        // `len <= max_message`, which the driver keeps under u32::MAX.
        self.head = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        self.head_at = 0;
        self.emit = emit;
        self.started = false;
        self.armed = false;
    }

    /// Refuses the peer: the close frame goes out with the next flush (the
    /// driver flushes before it drops a failed connection).
    fn refuse(&mut self, refusal: Refusal) -> io::Error {
        self.refused = Some(refusal);
        self.pong = None;
        if let Refusal::TooBig(size) = refusal {
            // Read as a header that declares the size, so the framing layer
            // rejects it like an oversize TCP frame. A size that does not
            // fit, or whose first byte is printable (then the header could
            // read as text), declares u32::MAX instead.
            let declared = u32::try_from(size)
                .ok()
                .filter(|s| s.to_be_bytes()[0] < 0x20)
                .unwrap_or(u32::MAX);
            self.head = declared.to_be_bytes();
            self.head_at = 0;
        }
        refusal.error()
    }

    /// Puts the owed pong in `out`, if a frame is not half-written and
    /// `out` has room.
    fn queue_pong(&mut self) {
        if self.pong.is_some()
            && self.at_boundary()
            && self.out.len() < WRITE_BUDGET
            && !self.close_sent
        {
            if let Some(pong) = self.pong.take() {
                put_header(&mut self.out, 0xA, pong.len());
                self.out.extend_from_slice(&pong);
            }
        }
    }

    /// Puts a close frame in `out` (once, and only between frames).
    fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        if self.close_sent || !self.at_boundary() {
            return;
        }
        self.queue_pong();
        match code {
            Some(code) => {
                put_header(&mut self.out, 0x8, 2 + reason.len());
                self.out.put_u16(code);
                self.out.extend_from_slice(reason.as_bytes());
            }
            None => put_header(&mut self.out, 0x8, 0),
        }
        self.close_sent = true;
    }

    /// No frame is half-written.
    fn at_boundary(&self) -> bool {
        self.wleft == 0 && self.whead_at == 0
    }

    /// Writes `out` to the socket until it is empty.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Hands out what is decoded into `buf`; false once `buf` is full.
    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.head_at < 4 {
            let n = (4 - self.head_at).min(buf.remaining());
            buf.put_slice(&self.head[self.head_at..self.head_at + n]);
            self.head_at += n;
        }
        if self.head_at == 4 {
            match &mut self.emit {
                Emit::Nothing => {}
                Emit::Rbuf(left) => {
                    let n = (*left).min(buf.remaining());
                    buf.put_slice(&self.rbuf[..n]);
                    self.rbuf.advance(n);
                    *left -= n;
                    if *left == 0 {
                        self.emit = Emit::Nothing;
                    }
                }
                Emit::Buffered(data) => {
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data.split_to(n));
                    if data.is_empty() {
                        self.emit = Emit::Nothing;
                    }
                }
            }
        }
        buf.remaining() > 0
    }

    fn idle(&self) -> bool {
        self.head_at == 4 && matches!(self.emit, Emit::Nothing)
    }

    /// Reads once from the socket into `rbuf`.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() == self.rbuf.len() {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.rbuf
        ))?;
        self.read_closed |= n == 0;
        Poll::Ready(Ok(n))
    }

    /// About to wait for bytes: owed pongs go out, a message left half-way
    /// starts its deadline, and a quiet connection gives its buffers back.
    /// `Ready` with the refusal when the deadline has passed.
    fn before_waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.queue_pong();
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.out.is_empty() && self.out.capacity() > 0 {
            self.out = BytesMut::new();
        }
        if let (true, Some(limit)) = (self.started, self.message_timeout) {
            let at = tokio::time::Instant::now() + limit;
            if !self.armed {
                self.armed = true;
                match &mut self.deadline {
                    Some(sleep) => sleep.as_mut().reset(at),
                    None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
                }
            }
            if let Some(sleep) = &mut self.deadline {
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.refuse(Refusal::Timeout(limit))));
                }
            }
        }
        Poll::Pending
    }
}

/// The peer's close frame's code (`None` if it gave none), checked as
/// RFC 6455 §7.4 asks.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Refusal> {
    match payload {
        [] => Ok(None),
        [_] => Err(Refusal::Protocol("close frame of one byte")),
        [hi, lo, reason @ ..] => {
            if std::str::from_utf8(reason).is_err() {
                return Err(Refusal::InvalidUtf8);
            }
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(Refusal::Protocol("close code not allowed"));
            }
            Ok(Some(code))
        }
    }
}

/// Writes a final frame's header, unmasked (a server's frames are not
/// masked).
fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Undoes a client's masking (RFC 6455 §5.3), eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    // Eight is a multiple of four: the mask's phase is where it began.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

impl<Io> AsyncRead for WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// Hands out every whole message already read, each as a frame, as far
    /// as `buf` has room; reads the socket only when none is left.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.hand_out(buf) {
                break;
            }
            if let Some(refusal) = this.refused {
                if buf.filled().len() > start {
                    break;
                }
                return Poll::Ready(Err(refusal.error()));
            }
            if this.peer_closed.is_some() {
                break; // EOF once what came before the close is handed out
            }
            if this.idle() {
                match this.decode() {
                    Ok(Step::Again) => continue,
                    Ok(Step::NeedMore | Step::Blocked) => {}
                    Err(refusal) => {
                        let e = this.refuse(refusal);
                        if matches!(refusal, Refusal::TooBig(_)) {
                            continue; // the oversize header goes to the driver
                        }
                        if buf.filled().len() > start {
                            break; // the messages before it first; then `refused`
                        }
                        return Poll::Ready(Err(e));
                    }
                }
            }
            // Nothing more is decoded without new bytes (or the pong owed
            // going out): hand out this batch first.
            if buf.filled().len() > start {
                break;
            }
            if this.read_closed {
                if !this.rbuf.is_empty() || this.partial.is_some() {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                // The TCP connection ended without a close frame, between
                // messages: as a TCP EOF between frames, a clean end.
                break;
            }
            if this.pong.is_some() {
                // A pong is owed: it takes its place in the output before
                // anything more is read; while the output is full (the
                // peer does not read), reading waits.
                this.queue_pong();
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
                if this.pong.is_some() {
                    return this.before_waiting(cx);
                }
                continue; // decode what waited behind the ping
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return this.before_waiting(cx),
            }
        }
        // Pongs owed go out with the replies to this batch (the driver
        // flushes after it), or, if it has none, when the next read waits.
        this.queue_pong();
        Poll::Ready(Ok(()))
    }
}

impl<Io> AsyncWrite for WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// Encodes whole frames of `buf` as binary messages into the output,
    /// without writing to the socket unless the output holds
    /// 64 KiB: the batch leaves at [`poll_flush`](Self::poll_flush).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.out.len() >= WRITE_BUDGET {
            ready!(this.poll_send(cx))?;
        }
        let mut used = 0;
        while used < buf.len() && this.out.len() < WRITE_BUDGET {
            if this.wleft >= DIRECT && buf.len() - used >= DIRECT {
                // A large body goes from the driver's buffer to the socket
                // without a copy, behind what `out` holds, in one write.
                let body = &buf[used..used + this.wleft.min(buf.len() - used)];
                let slices = [io::IoSlice::new(&this.out), io::IoSlice::new(body)];
                let n = match Pin::new(&mut this.io).poll_write_vectored(cx, &slices) {
                    Poll::Ready(Ok(0)) if used == 0 => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) if n > 0 => n,
                    Poll::Ready(Err(e)) if used == 0 => return Poll::Ready(Err(e)),
                    Poll::Pending if used == 0 => return Poll::Pending,
                    _ => break, // what was taken so far is reported
                };
                let from_out = n.min(this.out.len());
                this.out.advance(from_out);
                this.wleft -= n - from_out;
                used += n - from_out;
                continue;
            }
            if this.wleft > 0 {
                let n = this
                    .wleft
                    .min(buf.len() - used)
                    .min(WRITE_BUDGET - this.out.len());
                this.out.extend_from_slice(&buf[used..used + n]);
                this.wleft -= n;
                used += n;
                continue;
            }
            if this.whead_at == 0 {
                // Between frames: a pong owed goes here.
                this.queue_pong();
            }
            let n = (4 - this.whead_at).min(buf.len() - used);
            this.whead[this.whead_at..this.whead_at + n].copy_from_slice(&buf[used..used + n]);
            this.whead_at += n;
            used += n;
            if this.whead_at == 4 {
                this.whead_at = 0;
                this.wleft = u32::from_be_bytes(this.whead) as usize;
                put_header(&mut this.out, 0x2, this.wleft);
            }
        }
        Poll::Ready(Ok(used))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_pong();
        if let Some(refusal) = this.refused {
            this.queue_close(Some(refusal.code()), refusal.reason());
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends a close frame (the peer's code echoed after its close, else
    /// 1001 going away), then shuts the socket's writing side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match (this.refused, this.peer_closed) {
            (Some(refusal), _) => this.queue_close(Some(refusal.code()), refusal.reason()),
            (None, Some(echo)) => this.queue_close(echo, ""),
            (None, None) => this.queue_close(Some(code::GOING_AWAY), "going away"),
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    /// Runs a test body on paused time, failing it if it would hang (time
    /// jumps to the limit as soon as every task waits).
    async fn bounded<T>(body: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(600), body)
            .await
            .expect("the test hung")
    }

    /// A WebSocket pair over an in-memory pipe, the server end as `WsIo`.
    async fn pair(max: usize) -> (WsIo<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WsIo::new(a, max, Some(Duration::from_secs(30)));
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (server, client)
    }

    /// A client frame as bytes: FIN as given, masked with a fixed mask.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = BytesMut::new();
        put_header(&mut out, opcode, payload.len());
        out[0] = (out[0] & 0x7f) | if fin { 0x80 } else { 0 };
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let start = out.len();
        out.extend_from_slice(payload);
        unmask(&mut out[start..], mask);
        out.to_vec()
    }

    /// The close frame the client reads next, skipping everything else.
    async fn close_code_seen(client: &mut WebSocketStream<DuplexStream>) -> Option<u16> {
        while let Some(msg) = client.next().await {
            if let Ok(Message::Close(frame)) = msg {
                return frame.map(|f: CloseFrame| u16::from(f.code));
            }
        }
        None
    }

    #[tokio::test(start_paused = true)]
    async fn messages_become_frames_and_back() {
        bounded(async {
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
            // Shutdown sends a close (going away); the client's close ends our
            // reads.
            server.shutdown().await.unwrap();
            assert_eq!(close_code_seen(&mut client).await, Some(1001));
            drop(client);
            assert_eq!(server.read(&mut got).await.unwrap(), 0);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_fragmented_message_is_one_frame_and_pings_between_are_answered() {
        bounded(async {
            let (mut server, mut client) = pair(1024).await;
            let mut raw = Vec::new();
            raw.extend(frame(false, 0x1, "ña".as_bytes()));
            raw.extend(frame(true, 0x9, b"p"));
            raw.extend(frame(false, 0x0, b"nd"));
            raw.extend(frame(true, 0x0, "ú".as_bytes()));
            client.get_mut().write_all(&raw).await.unwrap();
            let mut got = vec![0u8; 4 + "ñandú".len()];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got[4..], "ñandú".as_bytes());
            assert_eq!(&got[..4], &(got.len() as u32 - 4).to_be_bytes());
            server.flush().await.unwrap();
            assert_eq!(
                client.next().await.unwrap().unwrap(),
                Message::Pong(Bytes::from_static(b"p"))
            );
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn large_fragments_join_intact() {
        bounded(async {
            let (a, mut client) = tokio::io::duplex(1 << 16);
            let mut server = WsIo::new(a, 1 << 20, None);
            let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            let mut raw = Vec::new();
            for (fin, opcode, part) in [(false, 0x2, &body[..70_000]), (true, 0x0, &body[70_000..])]
            {
                let mut out = BytesMut::new();
                put_header(&mut out, opcode, part.len());
                out[0] = (out[0] & 0x7f) | if fin { 0x80 } else { 0 };
                out[1] |= 0x80;
                out.extend_from_slice(&[9, 8, 7, 6]);
                let start = out.len();
                out.extend_from_slice(part);
                unmask(&mut out[start..], [9, 8, 7, 6]);
                raw.extend_from_slice(&out);
            }
            let mut got = vec![0u8; 4 + body.len()];
            let (written, read) = tokio::join!(client.write_all(&raw), server.read_exact(&mut got));
            written.unwrap();
            read.unwrap();
            assert_eq!(&got[..4], &(body.len() as u32).to_be_bytes());
            assert!(got[4..] == body[..]);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn every_message_already_read_comes_out_of_one_read() {
        bounded(async {
            let (mut server, mut client) = pair(1024).await;
            for i in 0..20u8 {
                client.feed(Message::binary(vec![i; 60])).await.unwrap();
            }
            client.flush().await.unwrap();
            // One read of the socket: all twenty messages, in one call.
            let mut buf = [0u8; 8 * 1024];
            let n = server.read(&mut buf).await.unwrap();
            assert_eq!(n, 20 * 64);
            // Replies are held until the flush, then leave together.
            for i in 0..20u8 {
                server.write_all(&[0, 0, 0, 1, i]).await.unwrap();
            }
            assert!(futures::FutureExt::now_or_never(client.next()).is_none());
            assert_eq!(server.out.len(), 20 * 3);
            server.flush().await.unwrap();
            for i in 0..20u8 {
                assert_eq!(
                    client.next().await.unwrap().unwrap(),
                    Message::binary(vec![i])
                );
            }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversize_message_reads_as_an_oversize_header_and_closes_1009() {
        bounded(async {
            let (mut server, mut client) = pair(8).await;
            client.send(Message::binary(vec![7u8; 9])).await.unwrap();
            let mut header = [0u8; 4];
            server.read_exact(&mut header).await.unwrap();
            assert_eq!(u32::from_be_bytes(header), 9);
            // The driver fails on the header and flushes before it drops.
            server.flush().await.unwrap();
            assert_eq!(close_code_seen(&mut client).await, Some(1009));
            // Fragments add up to the limit too.
            let (mut server, mut client) = pair(8).await;
            let mut raw = frame(false, 0x2, &[1; 5]);
            raw.extend(frame(true, 0x0, &[1; 5]));
            client.get_mut().write_all(&raw).await.unwrap();
            server.read_exact(&mut header).await.unwrap();
            assert_eq!(u32::from_be_bytes(header), 10);
            server.flush().await.unwrap();
            assert_eq!(close_code_seen(&mut client).await, Some(1009));
        })
        .await;
    }

    /// Reads until an error, which it returns.
    async fn read_error(server: &mut WsIo<DuplexStream>) -> io::Error {
        let mut buf = [0u8; 64];
        loop {
            match server.read(&mut buf).await {
                Ok(0) => panic!("EOF instead of an error"),
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    }

    fn ws_error(e: &io::Error) -> &Error {
        e.get_ref().and_then(|e| e.downcast_ref::<Error>()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn bad_input_is_closed_with_its_code() {
        bounded(async {
            let cases: [(Vec<u8>, u16); 7] = [
                (frame(true, 0x1, b"\xff\xfe"), 1007), // text not UTF-8
                (
                    [frame(false, 0x1, b"\xc3"), frame(true, 0x0, b"(")].concat(),
                    1007,
                ),
                (frame(true, 0x8, b"\x03\xe8\xff"), 1007), // close reason not UTF-8
                (b"\x82\x01x".to_vec(), 1002),             // not masked
                (frame(true, 0x3, b""), 1002),             // reserved opcode
                (frame(true, 0x0, b"x"), 1002),            // continuation of nothing
                (frame(false, 0x9, b""), 1002),            // fragmented ping
            ];
            for (raw, code) in cases {
                let (mut server, mut client) = pair(1024).await;
                client.get_mut().write_all(&raw).await.unwrap();
                let e = read_error(&mut server).await;
                assert_eq!(ws_error(&e).close_code(), Some(code), "{e}");
                server.flush().await.unwrap();
                assert_eq!(close_code_seen(&mut client).await, Some(code));
            }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_peers_close_ends_reads_and_is_echoed_at_shutdown() {
        bounded(async {
            let (mut server, mut client) = pair(1024).await;
            client.send(Message::binary(&b"last"[..])).await.unwrap();
            client
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Library(4000),
                    reason: "bye".into(),
                })))
                .await
                .unwrap();
            let mut all = Vec::new();
            server.read_to_end(&mut all).await.unwrap();
            assert_eq!(all, b"\0\0\0\x04last");
            server.write_all(b"\0\0\0\x01r").await.unwrap();
            server.shutdown().await.unwrap();
            assert_eq!(
                client.next().await.unwrap().unwrap(),
                Message::binary(&b"r"[..])
            );
            assert_eq!(close_code_seen(&mut client).await, Some(4000));
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_message_is_closed_at_its_deadline() {
        bounded(async {
            let (mut server, mut client) = pair(1024).await;
            server.set_message_timeout(Some(Duration::from_secs(5)));
            // A first fragment, then pings only: the message never completes.
            client
                .get_mut()
                .write_all(&frame(false, 0x2, b"ab"))
                .await
                .unwrap();
            let pinger = async {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    client
                        .get_mut()
                        .write_all(&frame(true, 0x9, b""))
                        .await
                        .unwrap();
                }
            };
            let started = tokio::time::Instant::now();
            let e = tokio::select! {
                e = read_error(&mut server) => e,
                () = pinger => unreachable!(),
            };
            assert!(matches!(ws_error(&e), Error::MessageTimeout(_)), "{e}");
            let waited = started.elapsed();
            assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(7));
            server.flush().await.unwrap();
            assert_eq!(close_code_seen(&mut client).await, Some(1008));
            // A frame whose bytes trickle is held to the same deadline.
            let (mut server, mut client) = pair(1024).await;
            server.set_message_timeout(Some(Duration::from_secs(5)));
            let raw = frame(true, 0x2, &[9; 100]);
            client.get_mut().write_all(&raw[..50]).await.unwrap();
            let e = read_error(&mut server).await;
            assert!(matches!(ws_error(&e), Error::MessageTimeout(_)), "{e}");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_pings_and_never_reads_is_held_to_a_budget() {
        bounded(async {
            // The pipe holds 64 KiB each way; the client writes pings and never
            // reads its pongs.
            let (a, mut client) = tokio::io::duplex(1 << 16);
            let mut server = WsIo::new(a, 1024, None);
            let pings = frame(true, 0x9, &[b'p'; 125]).repeat(10_000); // 1.3 MB
            let writer = tokio::time::timeout(Duration::from_secs(10), client.write_all(&pings));
            let reader = async {
                let mut buf = [0u8; 64];
                // No data ever comes: the read waits (the driver's deadlines
                // end such a connection).
                let read = server.read(&mut buf).await;
                unreachable!("a read returned: {read:?}");
            };
            tokio::select! {
                written = writer => assert!(written.is_err(), "every ping was taken {written:?}"),
                () = reader => {}
            }
            // What the server holds for this peer: its output budget and one
            // pong, besides what the pipe holds.
            assert!(
                server.out.len() <= WRITE_BUDGET + 2 + MAX_CONTROL,
                "{}",
                server.out.len()
            );
            assert!(server.rbuf.capacity() <= 2 * READ_CHUNK);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn large_bodies_go_out_between_small_frames_intact() {
        bounded(async {
            let (mut server, mut client) = pair(1 << 20).await;
            let large: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
            let mut frames = Vec::new();
            for body in [&b"a"[..], &large, b"b", &large[..DIRECT], b""] {
                frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
                frames.extend_from_slice(body);
            }
            let (written, got) = tokio::join!(
                async {
                    server.write_all(&frames).await?;
                    server.flush().await
                },
                async {
                    let mut got = Vec::new();
                    for _ in 0..5 {
                        got.push(client.next().await.unwrap().unwrap().into_data());
                    }
                    got
                }
            );
            written.unwrap();
            assert_eq!(got[0], &b"a"[..]);
            assert_eq!(got[1], &large[..]);
            assert_eq!(got[2], &b"b"[..]);
            assert_eq!(got[3], &large[..DIRECT]);
            assert!(got[4].is_empty());
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_holds_no_buffers() {
        bounded(async {
            let (mut server, mut client) = pair(1 << 20).await;
            // A large message, read and answered; then the client goes quiet.
            let mut got = vec![0u8; 4 + 300_000];
            let (sent, read) = tokio::join!(
                client.send(Message::binary(vec![1u8; 300_000])),
                server.read_exact(&mut got)
            );
            sent.unwrap();
            read.unwrap();
            let (echoed, reply) = tokio::join!(
                async {
                    server.write_all(&got).await?;
                    server.flush().await
                },
                client.next()
            );
            echoed.unwrap();
            assert_eq!(reply.unwrap().unwrap().len(), 300_000);
            let mut buf = [0u8; 16];
            let waiting = futures::FutureExt::now_or_never(server.read(&mut buf));
            assert!(waiting.is_none());
            assert_eq!((server.rbuf.capacity(), server.out.capacity()), (0, 0));
            // What stays is the struct itself, boxed once by the server.
            assert!(std::mem::size_of::<WsIo<tokio::net::TcpStream>>() <= 512);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_message_is_buffered_at_its_size() {
        bounded(async {
            let (mut server, mut client) = pair(1 << 20).await;
            let len = 700_000;
            let sending = tokio::spawn(async move {
                client.send(Message::binary(vec![3u8; len])).await.unwrap();
                client
            });
            let mut header = [0u8; 4];
            server.read_exact(&mut header).await.unwrap();
            // The whole message was read before its header came out, into a
            // buffer of its size (plus its frame header), not the doubling's.
            assert!(
                server.rbuf.capacity() < len + 64,
                "{}",
                server.rbuf.capacity()
            );
            assert_eq!(u32::from_be_bytes(header) as usize, len);
            let _client = sending.await.unwrap();
        })
        .await;
    }

    #[test]
    fn unmask_undoes_a_mask_at_any_length() {
        let mask = [0xa1, 0xb2, 0xc3, 0xd4];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut data = plain.clone();
            unmask(&mut data, mask);
            for (i, (m, p)) in data.iter().zip(&plain).enumerate() {
                assert_eq!(*m, p ^ mask[i % 4]);
            }
        }
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
