//! RFC 6455 frames on the wire: limits, close codes, why this end refuses,
//! headers and masking.

use std::io;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::error::{code, Error, Violation};

/// Most bytes of output [`WsIo`](super::stream::WsIo) holds before it writes to the socket from
/// [`poll_write`](tokio::io::AsyncWrite::poll_write) rather than taking more: the
/// driver's batch of replies (its own budget is 64 KiB by default) fits, so
/// a batch leaves in one write; a larger body goes through in pieces of
/// this size instead of being copied whole.
pub(super) const WRITE_BUDGET: usize = 64 * 1024;

/// What a read from the socket asks room for: the driver's own chunk, so
/// a batch of small messages arrives in one read.
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// What a read from the socket asks room for while a large message streams
/// through (`Emit::Stream`): the buffer is emptied into the driver's after
/// each read, so this is all it holds.
pub(super) const STREAM_CHUNK: usize = 64 * 1024;

/// From this many payload bytes in one `poll_write`, they are written to
/// the socket straight from the caller's buffer (the driver's large bodies,
/// which it does not copy either) instead of being copied into the output.
pub(super) const DIRECT: usize = 16 * 1024;

/// The longest control frame payload (RFC 6455 §5.5).
pub(super) const MAX_CONTROL: usize = 125;

/// Why this end closes the connection: the close frame's code, and the
/// error reads report.
#[derive(Clone, Copy)]
pub(super) enum Refusal {
    Protocol(Violation),
    InvalidUtf8,
    Timeout(Duration),
    /// Over the message limit (the message's size so far): reads hand the
    /// driver a header declaring the size, so it fails as for an oversize
    /// TCP frame.
    TooBig(u64),
}

impl Refusal {
    pub(super) fn code(self) -> u16 {
        match self {
            Refusal::Protocol(_) => code::PROTOCOL,
            Refusal::InvalidUtf8 => code::INVALID_DATA,
            Refusal::Timeout(_) => code::POLICY,
            Refusal::TooBig(_) => code::TOO_BIG,
        }
    }

    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::Protocol(_) => "protocol error",
            Refusal::InvalidUtf8 => "text message is not UTF-8",
            Refusal::Timeout(_) => "message not completed in time",
            Refusal::TooBig(_) => "message too big",
        }
    }

    pub(super) fn error(self) -> io::Error {
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

/// The peer's close frame's code (`None` if it gave none), checked as
/// RFC 6455 §7.4 asks.
pub(super) fn close_code(payload: &[u8]) -> Result<Option<u16>, Refusal> {
    match payload {
        [] => Ok(None),
        [_] => Err(Refusal::Protocol(Violation::ShortClose)),
        [hi, lo, reason @ ..] => {
            if std::str::from_utf8(reason).is_err() {
                return Err(Refusal::InvalidUtf8);
            }
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(Refusal::Protocol(Violation::CloseCode));
            }
            Ok(Some(code))
        }
    }
}

/// Writes a final frame's header, unmasked (a server's frames are not
/// masked).
pub(super) fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
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

/// Undoes a client's masking of bytes that start `at` bytes into a
/// payload.
pub(super) fn unmask_at(data: &mut [u8], mask: [u8; 4], at: usize) {
    let mut turned = mask;
    turned.rotate_left(at % 4);
    unmask(data, turned);
}

/// Undoes a client's masking (RFC 6455 §5.3), eight bytes at a time.
pub(super) fn unmask(data: &mut [u8], mask: [u8; 4]) {
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
