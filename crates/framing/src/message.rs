//! How messages become frames and back.

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, Result};

/// A message that can be written as one frame's payload.
///
/// Implemented for text (`String`, `&str`), raw bytes (`Bytes`, `Vec<u8>`,
/// `&[u8]`) and the serde formats [`Json<T>`], `MsgPack<T>` and
/// `Postcard<T>`. Implement it for your own format (protobuf, ...) to send
/// it through enchufe.
///
/// ```
/// use enchufe::framing::Encode;
/// assert_eq!(&"hola".encode().unwrap()[..], b"hola");
/// ```
pub trait Encode {
    /// The payload bytes of this message.
    ///
    /// # Errors
    /// [`Error::Encode`] when the value cannot be represented (for example a
    /// map with non-string keys in JSON).
    fn encode(self) -> Result<Bytes>;
}

/// A message that can be read from one frame's payload.
///
/// ```
/// use bytes::BytesMut;
/// use enchufe::framing::{Decode, Error};
/// let text = String::decode(BytesMut::from(&b"hola"[..])).unwrap();
/// assert_eq!(text, "hola");
/// let bad = String::decode(BytesMut::from(&b"\xff"[..]));
/// assert!(matches!(bad, Err(Error::InvalidUtf8 { valid_up_to: 0 })));
/// ```
pub trait Decode: Sized {
    /// Builds the message from a frame's payload.
    ///
    /// # Errors
    /// [`Error::InvalidUtf8`] or [`Error::Decode`] when the payload is not a
    /// valid message of this type. The stream stays usable.
    fn decode(frame: BytesMut) -> Result<Self>;
}

/// A text message: the course's format, UTF-8 with nothing added.
pub type Text = String;

/// A raw message: the payload bytes as they arrived, without copy.
pub type Raw = Bytes;

/// A message serialized as JSON with serde: any `Serialize` type to send, any
/// `DeserializeOwned` type to receive.
///
/// Text that Python's `json` module (and anything else) reads. Floats round
/// trip exactly. JSON cannot hold NaN or infinity: encoding one is an
/// [`Error::Encode`] (serde_json alone would write `null`, which then fails to
/// decode as a number at the receiver).
///
/// ```
/// use enchufe::framing::{Decode, Encode, Error, Json};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Point { x: i32, y: f64 }
///
/// let frame = Json(Point { x: 1, y: 9.141592653589793 }).encode().unwrap();
/// assert_eq!(&frame[..], br#"{"x":1,"y":9.141592653589793}"#);
/// let Json(back) = Json::<Point>::decode(frame[..].into()).unwrap();
/// assert_eq!(back, Point { x: 1, y: 9.141592653589793 });
///
/// let nan = Json(Point { x: 1, y: f64::NAN }).encode();
/// assert!(matches!(nan, Err(Error::Encode(_))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Json<T>(pub T);

/// A message serialized as [MessagePack](https://msgpack.org) with serde:
/// compact binary that Python's `msgpack` package (and most languages)
/// reads and writes.
///
/// Structs are written as maps keyed by field name, so `msgpack.unpackb`
/// gives a `dict`, and a Python `dict` with those keys decodes back into
/// the struct. Enums are maps of one entry, `{variant: value}` (a unit
/// variant is its name alone). Byte strings (`serde_bytes`) travel as
/// MessagePack `bin`, `Vec<u8>` as an array of integers.
///
/// Decoding is bounded: a declared length larger than the payload fails
/// without allocating it, and arrays and maps nest at most 128 levels
/// (as in serde_json). Bytes left
/// after the value are an error.
///
/// Needs the `msgpack` feature (on by default).
///
/// ```
/// use enchufe::framing::{Decode, Encode, MsgPack};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Persona { nombre: String, mail: String }
///
/// let p = Persona { nombre: "Juan Perez".into(), mail: "jp@algo.com".into() };
/// let frame = MsgPack(&p).encode().unwrap();
/// // A map of 2 entries (0x82), then "nombre" (a 6-byte string, 0xa6) ...
/// assert_eq!(&frame[..8], b"\x82\xa6nombre");
/// let MsgPack(back) = MsgPack::<Persona>::decode(frame[..].into()).unwrap();
/// assert_eq!(back, p);
/// ```
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsgPack<T>(pub T);

/// A message serialized with [postcard](https://docs.rs/postcard): the most
/// compact built-in format, for Rust on both ends (the course's `pickle`
/// lesson: any typed object, in few bytes).
///
/// No field names and no type tags: integers are varints, a struct is its
/// fields in order. Both ends must use the same type definition (changing a
/// field's type or order changes the meaning of the bytes; the wire format
/// itself is stable across postcard 1.x). Formats that describe themselves
/// (`serde_json::Value`, `#[serde(untagged)]`, `#[serde(flatten)]`) cannot be
/// decoded from it: use [`MsgPack`] or [`Json`] for those.
///
/// Decoding is bounded by the payload: a declared length larger than what
/// is left fails without allocating it, and sequences (structs, here), maps,
/// enums and options nest at most 128 levels (as [`Json`] and [`MsgPack`]
/// bound nesting; postcard itself has no limit, enchufe counts). Bytes left after the value are an error.
///
/// Needs the `postcard` feature (on by default).
///
/// ```
/// use enchufe::framing::{Decode, Encode, Postcard};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Persona { nombre: String, edad: u8 }
///
/// let frame = Postcard(Persona { nombre: "Ana".into(), edad: 30 }).encode().unwrap();
/// assert_eq!(&frame[..], b"\x03Ana\x1e"); // length-prefixed string, then one byte
/// let Postcard(back) = Postcard::<Persona>::decode(frame[..].into()).unwrap();
/// assert_eq!(back, Persona { nombre: "Ana".into(), edad: 30 });
/// ```
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Postcard<T>(pub T);

/// Bytes left in a frame after a complete binary message: the frame is not
/// one message of the expected type.
#[cfg(any(feature = "msgpack", feature = "postcard"))]
#[derive(Debug, thiserror::Error)]
#[error("{extra} bytes left after the end of the {format} message")]
struct TrailingBytes {
    format: &'static str,
    extra: usize,
}

/// `value` if it took the whole frame (`rest` is what it left).
#[cfg(any(feature = "msgpack", feature = "postcard"))]
fn whole<T>(value: T, rest: &[u8], format: &'static str) -> Result<T> {
    match rest.len() {
        0 => Ok(value),
        extra => Err(decode_error(TrailingBytes { format, extra })),
    }
}

fn encode_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Encode(Box::new(e))
}

fn decode_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Decode(Box::new(e))
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    // The capacity serde_json::to_vec starts with.
    let mut out = Vec::with_capacity(128);
    crate::finite::serialize(value, &mut serde_json::Serializer::new(&mut out))
        .map_err(encode_error)?;
    Ok(Bytes::from(out))
}

fn from_json<T: DeserializeOwned>(frame: &[u8]) -> Result<T> {
    serde_json::from_slice(frame).map_err(decode_error)
}

/// How deep values may nest in a [`MsgPack`] or [`Postcard`] message:
/// serde_json's limit, so every format of this crate stops at the same
/// depth. rmp-serde's own default, 1,024, overflows a 2 MiB thread stack (a
/// Tokio worker's) in a debug build when a recursive type is decoded from
/// crafted bytes, and postcard has no limit at all (20 KiB of a two-field
/// tree overflowed a 2 MiB stack; `depth.rs` counts for it). Measured in
/// `tests/untrusted_lengths.rs`.
#[cfg(any(feature = "msgpack", feature = "postcard"))]
const MAX_DEPTH: usize = 128;

/// A binary serializer's output as a frame, its error as [`Error::Encode`].
#[cfg(any(feature = "msgpack", feature = "postcard"))]
fn encoded<E: std::error::Error + Send + Sync + 'static>(
    serialized: std::result::Result<Vec<u8>, E>,
) -> Result<Bytes> {
    serialized.map(Bytes::from).map_err(encode_error)
}

#[cfg(feature = "msgpack")]
fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    encoded(rmp_serde::to_vec_named(value))
}

#[cfg(feature = "msgpack")]
fn from_msgpack<T: DeserializeOwned>(frame: &[u8]) -> Result<T> {
    // `from_slice` would ignore bytes after the value; reading through a
    // slice that advances tells how many are left. A length declared inside
    // the value reads at most what is left, and sequences pre-allocate at
    // most serde's cautious 1 MiB (tests/untrusted_lengths.rs measures it).
    let mut rest = frame;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de).map_err(decode_error)?;
    drop(de);
    whole(value, rest, "MessagePack")
}

#[cfg(feature = "postcard")]
fn to_postcard<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    encoded(postcard::to_stdvec(value))
}

#[cfg(feature = "postcard")]
fn from_postcard<T: DeserializeOwned>(frame: &[u8]) -> Result<T> {
    let mut de = postcard::Deserializer::from_bytes(frame);
    let value = crate::depth::deserialize(&mut de, MAX_DEPTH).map_err(Error::Decode)?;
    whole(value, de.finalize().map_err(decode_error)?, "postcard")
}

/// `Encode` for the format's wrapper and a reference to it, `Decode` for
/// the wrapper: one definition for every serde format.
macro_rules! serde_message {
    ($(#[$cfg:meta])* $name:ident, $to:ident, $from:ident) => {
        $(#[$cfg])*
        impl<T: Serialize> Encode for $name<T> {
            fn encode(self) -> Result<Bytes> {
                $to(&self.0)
            }
        }

        $(#[$cfg])*
        impl<T: Serialize> Encode for &$name<T> {
            fn encode(self) -> Result<Bytes> {
                $to(&self.0)
            }
        }

        $(#[$cfg])*
        impl<T: DeserializeOwned> Decode for $name<T> {
            fn decode(frame: BytesMut) -> Result<Self> {
                $from(&frame).map($name)
            }
        }
    };
}

serde_message!(Json, to_json, from_json);
serde_message!(
    #[cfg(feature = "msgpack")]
    MsgPack,
    to_msgpack,
    from_msgpack
);
serde_message!(
    #[cfg(feature = "postcard")]
    Postcard,
    to_postcard,
    from_postcard
);

impl Encode for String {
    fn encode(self) -> Result<Bytes> {
        Ok(Bytes::from(self))
    }
}

impl Encode for &String {
    fn encode(self) -> Result<Bytes> {
        self.as_str().encode()
    }
}

impl Encode for &str {
    fn encode(self) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(self.as_bytes()))
    }
}

impl Encode for Bytes {
    fn encode(self) -> Result<Bytes> {
        Ok(self)
    }
}

impl Encode for BytesMut {
    fn encode(self) -> Result<Bytes> {
        Ok(self.freeze())
    }
}

impl Encode for Vec<u8> {
    fn encode(self) -> Result<Bytes> {
        Ok(Bytes::from(self))
    }
}

impl Encode for &[u8] {
    fn encode(self) -> Result<Bytes> {
        Ok(Bytes::copy_from_slice(self))
    }
}

impl Decode for String {
    fn decode(frame: BytesMut) -> Result<Self> {
        // `Vec::from` reuses the frame's allocation when it is not shared.
        String::from_utf8(Vec::from(frame)).map_err(|e| Error::InvalidUtf8 {
            valid_up_to: e.utf8_error().valid_up_to(),
        })
    }
}

impl Decode for Bytes {
    fn decode(frame: BytesMut) -> Result<Self> {
        Ok(frame.freeze())
    }
}

impl Decode for BytesMut {
    fn decode(frame: BytesMut) -> Result<Self> {
        Ok(frame)
    }
}

impl Decode for Vec<u8> {
    fn decode(frame: BytesMut) -> Result<Self> {
        Ok(Vec::from(frame))
    }
}
