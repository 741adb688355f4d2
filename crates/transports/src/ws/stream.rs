//! [`WsIo`]'s state and its decoding of the peer's frames into messages.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use std::future::Future;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::error::Violation;
use super::frame::{
    close_code, put_header, unmask, unmask_at, Refusal, DIRECT, MAX_CONTROL, READ_CHUNK,
    STREAM_CHUNK, WRITE_BUDGET,
};

/// A WebSocket (server side) as a byte stream of length-prefixed frames:
/// each message read comes out as `[len u32 BE][payload]`, each frame
/// written goes out as one binary message. See the [module docs](super).
pub struct WsIo<Io> {
    pub(super) io: Io,
    /// Bytes read from the socket and not yet decoded: at most one frame
    /// being completed (which is why it may hold up to the message limit)
    /// plus what came behind it. Freed while the connection is quiet.
    pub(super) rbuf: BytesMut,
    /// The length prefix of the message being handed out; `head_at == 4`
    /// when none is.
    pub(super) head: [u8; 4],
    pub(super) head_at: usize,
    /// What follows that prefix.
    pub(super) emit: Emit,
    /// A fragmented message (or its first fragments) being assembled: the
    /// driver sees a message only when it is whole, so its length can lead.
    pub(super) partial: Option<Partial>,
    /// A data frame started arriving and its message is not whole: the
    /// completion deadline runs.
    pub(super) started: bool,
    /// The frame limit: a longer message is refused on its header.
    pub(super) max_message: usize,
    /// How long a started message may take to be whole.
    pub(super) message_timeout: Option<Duration>,
    /// The completion deadline, made on the first message that has to wait
    /// for more bytes and reset for the next; armed only while `started`.
    pub(super) deadline: Option<Pin<Box<Sleep>>>,
    pub(super) armed: bool,
    /// The pong owed for the last ping, not yet in `out`. While one is
    /// owed, no further frame is decoded: a peer that pings and never reads
    /// is held to one pong plus `out`, and its writes stall.
    pub(super) pong: Option<Bytes>,
    /// The peer's close frame arrived (its code, if it gave one): nothing
    /// more is decoded, reads end, and the close is echoed at shutdown.
    pub(super) peer_closed: Option<Option<u16>>,
    /// This end refused the peer: the close frame to send at the next
    /// flush, then the error every read returns.
    pub(super) refused: Option<Refusal>,
    /// The socket reached EOF.
    pub(super) read_closed: bool,
    /// Encoded bytes waiting for the socket (at most about
    /// [`WRITE_BUDGET`]); freed while the connection is quiet.
    pub(super) out: BytesMut,
    /// The length prefix of the frame being written, then how many of its
    /// payload bytes are still to come.
    pub(super) whead: [u8; 4],
    pub(super) whead_at: usize,
    pub(super) wleft: usize,
    /// A close frame went out: nothing may follow it (RFC 6455 §5.5.1).
    pub(super) close_sent: bool,
}

/// What follows a message's length prefix in [`WsIo::poll_read`].
pub(super) enum Emit {
    Nothing,
    /// This many bytes at the front of `rbuf`, unmasked (the payload of a
    /// message that was one frame: no copy until the driver's buffer).
    Rbuf(usize),
    /// An assembled message.
    Buffered(Bytes),
    /// The payload of a large binary message that is one frame, `left`
    /// bytes still to come, unmasked as they pass through `rbuf` (`at`: the
    /// mask's phase) and handed out as they arrive: the driver's buffer is
    /// the only one that holds the whole message.
    Stream {
        left: usize,
        mask: [u8; 4],
        at: usize,
    },
}

/// A fragmented message so far.
pub(super) struct Partial {
    /// Its first frame was text: it must be UTF-8.
    pub(super) text: bool,
    /// How much of `data` is known to be UTF-8 (text only), so each
    /// fragment is checked once.
    pub(super) checked: usize,
    pub(super) data: BytesMut,
}

/// What decoding the front of `rbuf` gave.
pub(super) enum Step {
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
    /// [`Options::message_timeout`](super::options::Options::message_timeout) does for [`accept`](super::handshake::accept).
    pub fn set_message_timeout(&mut self, timeout: Option<Duration>) {
        self.message_timeout = timeout;
    }

    /// Decodes the frame at the front of `rbuf`, if it is all there.
    pub(super) fn decode(&mut self) -> Result<Step, Refusal> {
        let mut cursor = io::Cursor::new(&self.rbuf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Step::NeedMore),
            Err(_) => return Err(Refusal::Protocol(Violation::ReservedOpcode)),
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
            if let (Some(mask), true) = (header.mask, plain && len >= DIRECT) {
                if header.is_final
                    && self.partial.is_none()
                    && matches!(header.opcode, OpCode::Data(Data::Binary))
                {
                    // A large binary message in one frame: nothing in its
                    // payload can be refused (it is not text), so it is
                    // handed out as it arrives instead of being gathered
                    // here and copied whole into the driver's buffer.
                    self.rbuf.advance(header_len);
                    self.start_message(
                        len,
                        Emit::Stream {
                            left: len,
                            mask,
                            at: 0,
                        },
                    );
                    self.started = true;
                    return Ok(Step::Again);
                }
            }
            self.started |= data.is_some();
            self.make_room(header_len + len);
            return Ok(Step::NeedMore);
        }
        // The rest is checked on the whole frame, in tungstenite's order,
        // so the two agree on every input (`tests/ws_against_tungstenite.rs`).
        let Some(mask) = header.mask else {
            return Err(Refusal::Protocol(Violation::Unmasked));
        };
        if !plain {
            // No extension was negotiated.
            return Err(Refusal::Protocol(Violation::ReservedBit));
        }
        match in_order {
            None if !header.is_final || len > MAX_CONTROL => {
                return Err(Refusal::Protocol(Violation::BadControl));
            }
            Some(false) => return Err(Refusal::Protocol(Violation::FragmentOrder)),
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
    pub(super) fn make_room(&mut self, need: usize) {
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
    pub(super) fn start_message(&mut self, len: usize, emit: Emit) {
        // `len <= max_message`, which the driver keeps under u32::MAX.
        self.head = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        self.head_at = 0;
        self.emit = emit;
        self.started = false;
        self.armed = false;
    }

    /// Refuses the peer: the close frame goes out with the next flush (the
    /// driver flushes before it drops a failed connection).
    pub(super) fn refuse(&mut self, refusal: Refusal) -> io::Error {
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
    pub(super) fn queue_pong(&mut self) {
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
    pub(super) fn queue_close(&mut self, code: Option<u16>, reason: &str) {
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
    pub(super) fn at_boundary(&self) -> bool {
        self.wleft == 0 && self.whead_at == 0
    }

    /// Writes `out` to the socket until it is empty.
    pub(super) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
    pub(super) fn hand_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
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
                Emit::Stream { left, mask, at } => {
                    let n = (*left).min(buf.remaining()).min(self.rbuf.len());
                    unmask_at(&mut self.rbuf[..n], *mask, *at);
                    buf.put_slice(&self.rbuf[..n]);
                    self.rbuf.advance(n);
                    *left -= n;
                    *at = (*at + n) % 4;
                    if *left == 0 {
                        self.emit = Emit::Nothing;
                        self.started = false;
                        self.armed = false;
                    }
                }
            }
        }
        buf.remaining() > 0
    }

    pub(super) fn idle(&self) -> bool {
        self.head_at == 4 && matches!(self.emit, Emit::Nothing)
    }

    /// Reads once from the socket into `rbuf`.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let Emit::Stream { left, .. } = self.emit {
            // The buffer drains as fast as it fills: reads of up to
            // `STREAM_CHUNK`, into the same memory each time.
            self.rbuf.reserve(left.min(STREAM_CHUNK));
        } else if self.rbuf.capacity() == self.rbuf.len() {
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
    pub(super) fn before_waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
