//! Length-prefixed framing for enchufe.
//!
//! Every message on the wire is one **frame**: a 4-byte big-endian unsigned
//! length, then exactly that many payload bytes. This is the protocol of the
//! course's Python `Server` and `Client` classes, so enchufe speaks to them
//! byte for byte.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |              payload length N (u32, big-endian)               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 payload: N bytes (may be 0)               ... |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! "hola" as a frame:  00 00 00 04  68 6f 6c 61
//! ```
//!
//! # Map of the crate
//!
//! - [`FrameCodec`]: the codec (tokio-util's `LengthDelimitedCodec` plus the
//!   checks enchufe needs: the length limit is enforced on the header, before
//!   any allocation, and EOF inside a frame is its own error).
//! - [`Transport`]: one type that owns a framed stream over any
//!   `AsyncRead + AsyncWrite` (TCP, Unix sockets, TLS, `tokio::io::duplex` in
//!   tests) and exposes typed send and receive. [`Transport::split`] gives a
//!   [`FrameReader`] and a [`FrameWriter`] for a reader task and a writer task.
//! - [`Encode`] and [`Decode`]: how a message becomes a frame and back.
//!   [`Text`] (UTF-8 `String`, the course's format) and [`Raw`] (`Bytes`, no
//!   conversion) come built in, and for any serde type: [`Json<T>`] (text),
//!   `MsgPack<T>` (binary that Python's `msgpack` reads; feature `msgpack`)
//!   and `Postcard<T>` (the most compact, Rust on both ends; feature
//!   `postcard`). Both features are on by default.
//! - [`mux`]: the multiplexed profile's hello and 9-byte message header
//!   (request ids, kinds), for many requests in flight on one connection.
//! - [`Wire`]: one connection's bytes for a connection driver that polls (the server's
//!   and client's connection core): one task reads and writes, no buffer
//!   while idle, reads that grow with what arrived, large bodies in their
//!   own buffer and written with one vectored write. Generic over its codec
//!   ([`Split`]): [`LengthPrefix`] by default, an HTTP request head in the
//!   `enchufe-http` crate.
//!   The connection engine that drives a `Wire` (deadlines, signals, the
//!   multiplexed session rules) is not here: it is private to enchufe.
//! - [`recycle`]: large frames' buffers given back by the program that
//!   received them, for the next large frame (a file receiver's chunks).
//! - [`OutFrame`]: an outgoing frame as a small prefix (a mux header) plus a
//!   body, written with a single copy.
//! - [`Config`] and [`Error`].
//!
//! # Example
//!
//! ```
//! use enchufe::framing::{Json, Transport};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> enchufe::framing::Result<()> {
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let (mut left, mut right) = (Transport::new(a), Transport::new(b));
//!
//! left.send_msg("hola").await?;
//! left.send_msg(Json(vec![1, 2, 3])).await?;
//!
//! let text: String = right.recv_msg().await?.expect("a frame");
//! let Json(numbers): Json<Vec<u32>> = right.recv_msg().await?.expect("a frame");
//! assert_eq!((text.as_str(), numbers), ("hola", vec![1, 2, 3]));
//! # Ok(())
//! # }
//! ```

mod body;
mod codec;
mod config;
#[cfg(feature = "postcard")]
mod depth;
mod error;
mod finite;
mod message;
pub mod mux;
pub mod recycle;
mod setters;
mod transport;
mod wire;

pub use body::Body;
#[doc(hidden)]
pub use body::{poll_chunk, poll_read_chunks, BodySender, Chunks, BODY_CHUNKS};

/// What [`chunked_body_io!`] names from other crates, so that a crate using
/// it needs no dependency of its own on them. Not covered by semver.
#[doc(hidden)]
pub mod __body_io {
    pub use futures::Stream;
    pub use tokio::io::{AsyncRead, ReadBuf};
}
pub use codec::{FrameCodec, OutFrame};
pub use config::Config;
#[doc(hidden)]
pub use error::is_closed_io;
pub use error::{AddrError, BoxError, Error, Foreign, Malformed, Result};
#[cfg(feature = "msgpack")]
pub use message::MsgPack;
#[cfg(feature = "postcard")]
pub use message::Postcard;
pub use message::{Decode, Encode, Json, Raw, Text};
#[doc(hidden)]
pub use setters::at_least_one;

/// The `bytes` crate's buffers, which [`Encode`] and [`Decode`] take and
/// give, so a codec of your own needs no extra dependency.
///
/// ```
/// use enchufe::framing::{Bytes, BytesMut, Decode, Encode, Result};
/// struct Celsius(i16);
/// impl Encode for Celsius {
///     fn encode(self) -> Result<Bytes> {
///         Ok(Bytes::copy_from_slice(&self.0.to_be_bytes()))
///     }
/// }
/// impl Decode for Celsius {
///     fn decode(frame: BytesMut) -> Result<Self> {
///         let bytes: [u8; 2] = frame[..].try_into().map_err(|e| enchufe::framing::Error::Decode(Box::new(e)))?;
///         Ok(Celsius(i16::from_be_bytes(bytes)))
///     }
/// }
/// let frame = Celsius(-5).encode()?;
/// assert_eq!(Celsius::decode(BytesMut::from(&frame[..]))?.0, -5);
/// # Ok::<(), enchufe::framing::Error>(())
/// ```
pub use bytes::{Bytes, BytesMut};
pub use transport::{FrameReader, FrameWriter, Transport, MAX_BATCH};
// The wire is the engine's view of the bytes: public for enchufe's own
// crates (the engine and the roles), hidden and not covered by semver.
pub use wire::MemoryBudget;
pub use wire::STREAM_CHUNK;
#[doc(hidden)]
pub use wire::{LengthPrefix, Next, Split, Wire, LARGE_FRAME};

/// Bytes taken by the length prefix of every frame.
pub const HEADER_LEN: usize = 4;
