//! [`Split`]: how a [`Wire`](super::Wire) finds messages in the bytes it
//! read, the type parameter that makes the wire, and the
//! [`Driver`](crate::driver::Driver) over it, generic over their codec.
//!
//! The default, [`LengthPrefix`], is the wire's own path: the 4-byte length
//! prefix with large frames in their own buffer, streamed bodies and the
//! prefix written before every frame, compiled exactly as it was before the
//! parameter existed (the choice is a constant, folded away). Any other
//! `Split` sees the read buffer and nothing else: it cuts the next message
//! off its front, or says it needs more bytes, or fails; frames it is given
//! to write leave as they are (the message carries its own framing, as an
//! HTTP response does).
//!
//! ```text
//!   socket -> [rbuf] --Split::split--> message (BytesMut)   -> the role
//!   role   -> OutFrame (prefix + body, no length added)      -> socket
//! ```

use bytes::{Buf, BytesMut};

use crate::{Error, Result, HEADER_LEN};

/// How a wire finds the next message among the bytes it has read.
///
/// A codec of its own (an HTTP request head, say) implements
/// [`Split::split`]; [`LengthPrefix`] is the default and the wire handles it
/// on its own path.
///
/// # Examples
///
/// Lines ending in `\n`, at most 80 bytes each:
///
/// ```
/// use enchufe_framing::{BytesMut, Config, Error, Result, Split, Wire};
///
/// #[derive(Debug)]
/// struct Lines;
/// impl Split for Lines {
///     fn split(&mut self, buf: &mut BytesMut, _max: usize) -> Result<Option<BytesMut>> {
///         match buf.iter().position(|&b| b == b'\n') {
///             Some(end) if end < 80 => Ok(Some(buf.split_to(end + 1))),
///             None if buf.len() < 80 => Ok(None),
///             _ => Err(Error::FrameTooLarge { declared: buf.len() as u64, limit: 80 }),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// let (mut ours, theirs) = tokio::io::duplex(1024);
/// let mut wire = Wire::with_split(theirs, &Config::default(), Lines);
/// tokio::io::AsyncWriteExt::write_all(&mut ours, b"hola\nadios\n").await?;
/// assert_eq!(&wire.recv().await?.expect("a line")[..], b"hola\n");
/// assert_eq!(&wire.recv().await?.expect("a line")[..], b"adios\n");
/// # Ok(())
/// # }
/// ```
pub trait Split {
    /// Whether this is [`LengthPrefix`], which the wire runs on its own
    /// path (large frames, streams, the prefix on writes). Leave it `false`.
    #[doc(hidden)]
    const LENGTH_PREFIX: bool = false;

    /// Cuts the next message off the front of `buf`: `Ok(Some(message))`,
    /// or `Ok(None)` when `buf` holds no complete one yet. `max` is the
    /// wire's [`Config::max_frame_length`](crate::Config::max_frame_length),
    /// for a codec with no limit of its own.
    ///
    /// # Errors
    /// Whatever makes the stream unreadable from here on (the connection
    /// ends). `buf` grows with every read until a message is complete, so a
    /// codec must fail, not wait, once `buf` holds more than the longest
    /// message it accepts: that is what bounds the wire's memory.
    fn split(&mut self, buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>>;
}

/// The default codec: a 4-byte big-endian length, then that many bytes
/// (see the [crate](crate) docs).
///
/// [`Split::split`] here is the rule over a buffer alone, for frames of at
/// most `max` bytes; a [`Wire`](super::Wire) applies the same rule on its own
/// path, which adds large frames read into their own buffer and streamed
/// bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LengthPrefix;

impl Split for LengthPrefix {
    const LENGTH_PREFIX: bool = true;

    fn split(&mut self, buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = [buf[0], buf[1], buf[2], buf[3]];
        let declared = u32::from_be_bytes(header) as usize;
        if declared > max {
            return Err(Error::oversize_header(header, max));
        }
        if buf.len() < HEADER_LEN + declared {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        Ok(Some(buf.split_to(declared)))
    }
}
