//! The transfer protocol's messages: socket-free, tested on bytes.
//!
//! Every transfer message is one ordinary enchufe frame (a request or its
//! reply) whose payload starts with the magic `ENXF` and a kind byte:
//!
//! ```text
//!  control:  "ENXF" 'J' | JSON object {"type": "offer", ...}
//!  chunk:    "ENXF" 'C' | id (16 bytes) | offset (u64 BE) | data ...
//!            '-magic-'    '----------- 25-byte header ----' '- raw -'
//! ```
//!
//! Control messages are few and small, so JSON costs nothing that matters
//! and can be read in a packet capture; chunks carry raw bytes after a
//! fixed header, so the data is never copied into an encoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use enchufe_framing::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Reason;

/// The first bytes of every transfer frame.
pub const MAGIC: &[u8; 4] = b"ENXF";
const CONTROL: u8 = b'J';
const CHUNK: u8 = b'C';
/// Bytes before a chunk's data: magic, kind, id, offset.
pub(crate) const CHUNK_HEADER: usize = 4 + 1 + 16 + 8;

/// Names one transfer on both ends; a resumed transfer offers the same id.
///
/// ```
/// use enchufe::transfer::TransferId;
/// let id = TransferId::from_bytes([7; 16]);
/// assert_eq!(id.to_string(), "07".repeat(16));
/// assert_eq!(id.to_string().parse::<TransferId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId([u8; 16]);

impl TransferId {
    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> TransferId {
        TransferId(bytes)
    }

    /// A fresh id: an XXH3-128 of the clock, the process id and a counter,
    /// so two calls never repeat (no random-number crate needed).
    pub fn random() -> TransferId {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = Digest::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        h.update(&now.as_nanos().to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        TransferId::derive(h)
    }

    /// The id of a file's transfer from what identifies its content: the
    /// same name, size and modification time give the same id, so sending
    /// it again resumes; a changed file gets a new one.
    pub fn for_file(name: &str, size: u64, modified: Option<std::time::SystemTime>) -> TransferId {
        let mut h = Digest::new();
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(&size.to_le_bytes());
        if let Some(t) = modified.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()) {
            h.update(&t.as_nanos().to_le_bytes());
        }
        TransferId::derive(h)
    }

    fn derive(h: Digest) -> TransferId {
        TransferId(h.bytes())
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransferId({self})")
    }
}

/// A [`TransferId`] that is not 32 hex digits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a transfer id is 32 hex digits")]
pub struct BadTransferId;

impl std::str::FromStr for TransferId {
    type Err = BadTransferId;

    fn from_str(s: &str) -> Result<TransferId, BadTransferId> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(BadTransferId);
        }
        let digit = |c: u8| (c as char).to_digit(16).ok_or(BadTransferId);
        let mut id = [0; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            id[i] = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        Ok(TransferId(id))
    }
}

impl Serialize for TransferId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TransferId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TransferId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The control messages, both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Control {
    /// Sender: I have `size` bytes named `name`, checked with the hash
    /// named `digest`; `restart` drops any partial file kept for this id.
    Offer {
        id: TransferId,
        name: String,
        size: u64,
        /// Absent from the offers of versions before the field, which
        /// hashed with BLAKE3: they get a typed refusal naming it.
        #[serde(default = "digest_before_the_field")]
        digest: String,
        restart: bool,
    },
    /// Receiver: send from `offset`; the `offset` bytes kept hash to
    /// `prefix_hash`; chunks of at most `max_chunk`, at most `window` ahead.
    Accept {
        offset: u64,
        prefix_hash: String,
        max_chunk: u32,
        window: u32,
    },
    /// Receiver: this chunk is taken (queued for the disk in order).
    Ack { offset: u64 },
    /// Sender: every chunk is acknowledged; the whole body hashes to `hash`.
    Finish { id: TransferId, hash: String },
    /// Receiver: the file is under its final name.
    Done { size: u64 },
    /// Sender: give up and delete the partial file.
    Cancel { id: TransferId },
    /// Receiver: cancelled.
    Cancelled,
    /// Receiver: refused or failed.
    Refused { reason: Reason, message: String },
}

fn digest_before_the_field() -> String {
    "blake3".into()
}

/// One chunk of a transfer's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) id: TransferId,
    pub(crate) offset: u64,
    pub(crate) data: Bytes,
}

/// A transfer frame: what a receiver handles and answers.
///
/// Decode one from a request with [`Decode`] (or let [`Routed`] sort it
/// from your own messages); hand it to
/// [`Receiver::handle`](crate::Receiver::handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub(crate) FrameKind);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Control(Control),
    Chunk(Chunk),
}

impl Frame {
    pub(crate) fn control(c: Control) -> Frame {
        Frame(FrameKind::Control(c))
    }

    /// Whether a payload is a transfer frame: it starts with [`MAGIC`].
    pub fn is_transfer(payload: &[u8]) -> bool {
        payload.starts_with(MAGIC)
    }
}

/// A buffer for one chunk's frame with its header written, ready for up to
/// `capacity` data bytes: the source is read straight into it.
pub(crate) fn chunk_buffer(id: TransferId, offset: u64, capacity: usize) -> BytesMut {
    reuse_chunk_buffer(BytesMut::with_capacity(CHUNK_HEADER + capacity), id, offset)
}

/// [`chunk_buffer`] in a buffer that served an earlier chunk: its memory is
/// already the process's, so no page is faulted in and zeroed again.
pub(crate) fn reuse_chunk_buffer(mut buf: BytesMut, id: TransferId, offset: u64) -> BytesMut {
    buf.clear();
    put_chunk_header(&mut buf, id, offset);
    buf
}

/// A chunk's header alone, for a chunk whose data follows from a file
/// region (`Client::request_file`).
pub(crate) fn chunk_head(id: TransferId, offset: u64) -> Bytes {
    let mut head = BytesMut::with_capacity(CHUNK_HEADER);
    put_chunk_header(&mut head, id, offset);
    head.freeze()
}

/// A chunk's [`CHUNK_HEADER`] bytes: magic, kind, id, offset.
fn put_chunk_header(mut out: impl BufMut, id: TransferId, offset: u64) {
    out.put_slice(MAGIC);
    out.put_u8(CHUNK);
    out.put_slice(id.as_bytes());
    out.put_u64(offset);
}

/// A chunk's frame of exactly `len` data bytes, its header written, for a
/// blocking read in place over whatever `buf` held: a buffer that served an
/// earlier chunk keeps its length, so only bytes it never held are zeroed
/// (zeroing every 1 MiB chunk before reading over it was 7% of a sender's
/// CPU in `perf`).
pub(crate) fn sized_chunk_buffer(
    mut buf: BytesMut,
    id: TransferId,
    offset: u64,
    len: usize,
) -> BytesMut {
    buf.truncate(CHUNK_HEADER + len);
    buf.resize(CHUNK_HEADER + len, 0);
    put_chunk_header(&mut buf[..CHUNK_HEADER], id, offset);
    buf
}

impl Encode for Frame {
    fn encode(self) -> enchufe_framing::Result<Bytes> {
        match self.0 {
            FrameKind::Control(c) => {
                let mut out = Vec::with_capacity(64);
                out.extend_from_slice(MAGIC);
                out.push(CONTROL);
                serde_json::to_writer(&mut out, &c)
                    .map_err(|e| enchufe_framing::Error::Encode(Box::new(e)))?;
                Ok(Bytes::from(out))
            }
            FrameKind::Chunk(c) => {
                let mut buf = chunk_buffer(c.id, c.offset, c.data.len());
                buf.put_slice(&c.data);
                Ok(buf.freeze())
            }
        }
    }
}

impl Decode for Frame {
    fn decode(mut frame: BytesMut) -> enchufe_framing::Result<Frame> {
        let bad = |what: &str| enchufe_framing::Error::Decode(what.into());
        if frame.len() < 5 || !Frame::is_transfer(&frame) {
            return Err(bad("not a transfer frame (no ENXF magic)"));
        }
        let kind = frame[4];
        frame.advance(5);
        match kind {
            CONTROL => serde_json::from_slice(&frame)
                .map(|c| Frame(FrameKind::Control(c)))
                .map_err(|e| enchufe_framing::Error::Decode(Box::new(e))),
            CHUNK => {
                if frame.len() < CHUNK_HEADER - 5 {
                    return Err(bad("chunk shorter than its header"));
                }
                let mut id = [0; 16];
                frame.copy_to_slice(&mut id);
                let offset = frame.get_u64();
                Ok(Frame(FrameKind::Chunk(Chunk {
                    id: TransferId(id),
                    offset,
                    data: frame.freeze(),
                })))
            }
            _ => Err(bad("unknown transfer frame kind")),
        }
    }
}

/// A request that is either a transfer frame or one of your own messages:
/// the request type of a handler that accepts transfers beside its own
/// requests (and, as the response type, its replies).
///
/// A payload that starts with [`MAGIC`] is a transfer frame; anything else
/// is decoded as `T`. Your own messages must therefore not start with the
/// bytes `ENXF`.
///
/// ```
/// use bytes::BytesMut;
/// use enchufe::framing::Decode;
/// use enchufe::transfer::Routed;
/// let req = Routed::<String>::decode(BytesMut::from(&b"hola"[..])).unwrap();
/// assert!(matches!(req, Routed::App(s) if s == "hola"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed<T> {
    /// A transfer frame, for [`Receiver::handle`](crate::Receiver::handle).
    Transfer(Frame),
    /// One of your own messages.
    App(T),
}

impl<T: Decode> Decode for Routed<T> {
    fn decode(frame: BytesMut) -> enchufe_framing::Result<Self> {
        if Frame::is_transfer(&frame) {
            Frame::decode(frame).map(Routed::Transfer)
        } else {
            T::decode(frame).map(Routed::App)
        }
    }
}

impl<T: Encode> Encode for Routed<T> {
    fn encode(self) -> enchufe_framing::Result<Bytes> {
        match self {
            Routed::Transfer(f) => f.encode(),
            Routed::App(t) => t.encode(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) -> Frame {
        Frame::decode(BytesMut::from(&f.clone().encode().unwrap()[..])).unwrap()
    }

    #[test]
    fn control_and_chunk_round_trip() {
        let id = TransferId::random();
        let offer = Frame::control(Control::Offer {
            id,
            name: "año.bin".into(),
            size: 5 << 30,
            digest: crate::digest::ALGORITHM.into(),
            restart: false,
        });
        assert_eq!(round_trip(offer.clone()), offer);
        let chunk = Frame(FrameKind::Chunk(Chunk {
            id,
            offset: 1 << 33,
            data: Bytes::from_static(b"datos"),
        }));
        let bytes = chunk.clone().encode().unwrap();
        assert_eq!(bytes.len(), CHUNK_HEADER + 5);
        assert_eq!(&bytes[..5], b"ENXFC");
        assert_eq!(&bytes[21..29], &(1u64 << 33).to_be_bytes());
        assert_eq!(round_trip(chunk.clone()), chunk);
    }

    #[test]
    fn control_is_readable_json_after_the_magic() {
        let f = Frame::control(Control::Ack { offset: 3 }).encode().unwrap();
        assert_eq!(&f[..], br#"ENXFJ{"type":"ack","offset":3}"#);
    }

    #[test]
    fn bad_frames_are_decode_errors() {
        for bad in [&b"ENXF"[..], b"ENXFC123", b"ENXFZ", b"ENXFJ{", b"hola"] {
            assert!(Frame::decode(BytesMut::from(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routed_sorts_by_magic() {
        let t = Routed::<String>::decode(BytesMut::from(&b"ENXFJ{\"type\":\"cancelled\"}"[..]));
        assert!(matches!(t, Ok(Routed::Transfer(_))));
        let a = Routed::<String>::decode(BytesMut::from(&b"ENX"[..]));
        assert!(matches!(a, Ok(Routed::App(s)) if s == "ENX"));
    }

    #[test]
    fn ids_parse_only_hex() {
        assert!("zz".repeat(16).parse::<TransferId>().is_err());
        assert!("ab".parse::<TransferId>().is_err());
        assert_ne!(TransferId::random(), TransferId::random());
        let t = std::time::SystemTime::UNIX_EPOCH;
        assert_eq!(
            TransferId::for_file("a", 1, Some(t)),
            TransferId::for_file("a", 1, Some(t))
        );
        assert_ne!(
            TransferId::for_file("a", 1, None),
            TransferId::for_file("a", 2, None)
        );
    }
}
