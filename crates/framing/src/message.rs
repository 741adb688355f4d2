//! How messages become frames and back.

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, Result};

/// A message that can be written as one frame's payload.
///
/// Implemented for text (`String`, `&str`), raw bytes (`Bytes`, `Vec<u8>`,
/// `&[u8]`) and [`Json<T>`]. Implement it for your own format (a binary serde
/// format, protobuf, ...) to send it through enchufe.
///
/// ```
/// use enchufe_framing::Encode;
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
/// use enchufe_framing::{Decode, Error};
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
/// ```
/// use enchufe_framing::{Decode, Encode, Json};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Point { x: i32, y: i32 }
///
/// let frame = Json(Point { x: 1, y: 2 }).encode().unwrap();
/// assert_eq!(&frame[..], br#"{"x":1,"y":2}"#);
/// let Json(back) = Json::<Point>::decode(frame[..].into()).unwrap();
/// assert_eq!(back, Point { x: 1, y: 2 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Json<T>(pub T);

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

impl<T: Serialize> Encode for Json<T> {
    fn encode(self) -> Result<Bytes> {
        serde_json::to_vec(&self.0)
            .map(Bytes::from)
            .map_err(|e| Error::Encode(Box::new(e)))
    }
}

impl<T: Serialize> Encode for &Json<T> {
    fn encode(self) -> Result<Bytes> {
        serde_json::to_vec(&self.0)
            .map(Bytes::from)
            .map_err(|e| Error::Encode(Box::new(e)))
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

impl<T: DeserializeOwned> Decode for Json<T> {
    fn decode(frame: BytesMut) -> Result<Self> {
        serde_json::from_slice(&frame)
            .map(Json)
            .map_err(|e| Error::Decode(Box::new(e)))
    }
}
