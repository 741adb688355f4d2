use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::{Config, Error, HEADER_LEN};

/// The frame codec: a 4-byte big-endian length, then the payload.
///
/// Built on tokio-util's [`LengthDelimitedCodec`], with two additions:
/// the declared length is checked against the limit as soon as the header is
/// in the buffer, so an oversize frame is [`Error::FrameTooLarge`] naming the
/// declared length and nothing is allocated for it; and a stream that ends
/// inside a frame is [`Error::UnexpectedEof`] rather than tokio-util's generic
/// "bytes remaining on stream".
///
/// Decoded frames are `BytesMut` views into the read buffer: no copy.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    max: usize,
    /// Payload length of the frame whose header the inner codec has consumed
    /// and whose body is still arriving. It mirrors the inner codec's state,
    /// which is private: needed to check the limit exactly once per header and
    /// to describe a truncated frame at EOF.
    pending: Option<usize>,
}

impl FrameCodec {
    /// A codec with the given limits.
    pub fn new(config: &Config) -> Self {
        let max = config.effective_max();
        let inner = LengthDelimitedCodec::builder()
            .length_field_length(HEADER_LEN)
            .big_endian()
            .max_frame_length(max)
            .new_codec();
        Self {
            inner,
            max,
            pending: None,
        }
    }

    /// The largest payload this codec accepts or produces.
    pub fn max_frame_length(&self) -> usize {
        self.max
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(&Config::default())
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        if self.pending.is_none() {
            if src.len() < HEADER_LEN {
                return Ok(None);
            }
            let declared = (&src[..HEADER_LEN]).get_u32() as usize;
            if declared > self.max {
                let header = [src[0], src[1], src[2], src[3]];
                return Err(Error::oversize_header(header, self.max));
            }
            self.pending = Some(declared);
        }
        let frame = self.inner.decode(src)?;
        if frame.is_some() {
            self.pending = None;
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        match self.pending {
            None if src.is_empty() => Ok(None),
            None => Err(Error::UnexpectedEof {
                expected: HEADER_LEN as u64,
                received: src.len() as u64,
            }),
            Some(len) => Err(Error::UnexpectedEof {
                expected: (HEADER_LEN + len) as u64,
                received: (HEADER_LEN + src.len()) as u64,
            }),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        if payload.len() > self.max {
            return Err(Error::TooLargeToSend {
                len: payload.len() as u64,
                limit: self.max,
            });
        }
        self.inner.encode(payload, dst)?;
        Ok(())
    }
}

/// An outgoing frame: an optional short prefix (the multiplexed header), then
/// the body. The codec writes length, prefix and body straight into its write
/// buffer, so adding a header costs no extra copy or allocation.
///
/// ```
/// use bytes::Bytes;
/// use enchufe::framing::OutFrame;
/// use enchufe::framing::mux::{Header, Kind};
/// let frame = OutFrame::with_header(Header { kind: Kind::Push, id: 0 }, Bytes::from_static(b"hi"));
/// assert_eq!(frame.len(), 11);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFrame {
    prefix: [u8; crate::mux::HEADER_LEN],
    prefix_len: u8,
    body: Bytes,
}

impl OutFrame {
    /// A plain frame: the body and nothing else.
    pub fn plain(body: Bytes) -> OutFrame {
        OutFrame {
            prefix: [0; crate::mux::HEADER_LEN],
            prefix_len: 0,
            body,
        }
    }

    /// A multiplexed frame: the header, then the body.
    pub fn with_header(header: crate::mux::Header, body: Bytes) -> OutFrame {
        OutFrame {
            prefix: header.to_bytes(),
            prefix_len: crate::mux::HEADER_LEN as u8,
            body,
        }
    }

    /// Payload length on the wire: prefix plus body.
    pub fn len(&self) -> usize {
        self.prefix_len as usize + self.body.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body, without the prefix.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The prefix bytes (empty for a plain frame).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len as usize]
    }
}

impl From<Bytes> for OutFrame {
    fn from(body: Bytes) -> OutFrame {
        OutFrame::plain(body)
    }
}

impl Encoder<OutFrame> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, frame: OutFrame, dst: &mut BytesMut) -> Result<(), Error> {
        let len = frame.len();
        if len > self.max {
            return Err(Error::TooLargeToSend {
                len: len as u64,
                limit: self.max,
            });
        }
        dst.reserve(HEADER_LEN + len);
        // `len <= self.max <= u32::MAX`, checked above.
        dst.put_u32(len as u32);
        dst.put_slice(frame.prefix());
        dst.extend_from_slice(&frame.body);
        Ok(())
    }
}
