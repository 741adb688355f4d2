//! [`RequestHead`]: the codec that finds HTTP/1.x request heads in a
//! connection's bytes, with limits, for the [`Wire`](enchufe_framing::Wire).

use bytes::BytesMut;
use enchufe_framing::{Error, Result, Split};

/// The most headers a head may carry whatever [`Limits::max_headers`] says:
/// the parser's header array lives on the stack (32 bytes each, 4 KiB).
pub const MAX_HEADERS: usize = 128;

/// How much of a request head a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most bytes of a head, request line to blank line. Default
    /// 16 KiB: what nginx accepts by default in its large header buffers
    /// (4 × 8 KiB) is more, but a GET with cookies fits in far less, and
    /// every connection may hold this much while its head arrives.
    pub max_head: usize,
    /// The most header lines (at most [`MAX_HEADERS`]). Default 64: browsers
    /// send about 15.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_head`].
    pub fn max_head(mut self, bytes: usize) -> Self {
        self.max_head = bytes;
        self
    }

    /// Sets [`Limits::max_headers`] (capped at [`MAX_HEADERS`]).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count.min(MAX_HEADERS);
        self
    }
}

/// Why a head was refused: the reply a server owes before it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Over [`Limits::max_head`] bytes (`431`).
    TooLarge,
    /// Over [`Limits::max_headers`] headers (`431`).
    TooManyHeaders,
    /// Not an HTTP/1.x request head; what was wrong (`400`).
    Malformed(&'static str),
}

impl Refusal {
    /// The status code that answers it: `431` or `400`.
    pub fn status(self) -> u16 {
        match self {
            Refusal::TooLarge | Refusal::TooManyHeaders => 431,
            Refusal::Malformed(_) => 400,
        }
    }
}

/// The [`Split`] of HTTP/1.x request heads: each message it cuts is one
/// whole head, request line through the blank line, checked by `httparse`
/// within [`Limits`]. Bodies are not its business (the server refuses
/// requests that have one).
///
/// A head is parsed when its first bytes arrive (garbage is refused at
/// once, not after 16 KiB of it) and again when its blank line does; in
/// between only the new bytes are searched for the blank line, so a head
/// trickled a byte at a time costs linear work, not quadratic.
///
/// ```
/// use enchufe::framing::{BytesMut, Split};
/// use enchufe::http::{Limits, Refusal, RequestHead};
///
/// let mut head = RequestHead::new(Limits::default());
/// let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2"[..]);
/// let first = head.split(&mut buf, 0).unwrap().expect("a whole head");
/// assert_eq!(&first[..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
/// assert!(head.split(&mut buf, 0).unwrap().is_none(), "the second is partial");
///
/// let mut head = RequestHead::new(Limits::default());
/// let mut buf = BytesMut::from(&b"\x16\x03\x01 not http"[..]);
/// assert!(head.split(&mut buf, 0).is_err());
/// assert_eq!(head.refusal().map(|r| r.status()), Some(400));
/// ```
#[derive(Debug, Clone)]
pub struct RequestHead {
    limits: Limits,
    /// Bytes of the current head already searched for its blank line.
    scanned: usize,
    /// The current head's first bytes were parsed (garbage refused early).
    checked: bool,
    /// Why the last head was refused, for the server's reply.
    refused: Option<Refusal>,
}

impl RequestHead {
    /// A codec with these limits.
    pub fn new(limits: Limits) -> Self {
        RequestHead {
            limits: limits.max_headers(limits.max_headers),
            scanned: 0,
            checked: false,
            refused: None,
        }
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Why the last [`Split::split`] failed, if it did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refused
    }

    fn refuse(&mut self, refusal: Refusal, buf: &BytesMut) -> Error {
        self.refused = Some(refusal);
        match refusal {
            Refusal::TooLarge => Error::FrameTooLarge {
                declared: buf.len() as u64,
                limit: self.limits.max_head,
            },
            Refusal::TooManyHeaders => Error::Malformed("too many header fields"),
            Refusal::Malformed(what) => Error::Malformed(what),
        }
    }

    /// Where the blank line ending the head is, searching only bytes not
    /// searched before (`\r\n\r\n`, or bare `\n\n`, which httparse takes).
    fn blank_line(&mut self, buf: &[u8]) -> bool {
        let start = self.scanned.saturating_sub(3);
        self.scanned = buf.len();
        buf[start..]
            .windows(2)
            .enumerate()
            .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && buf.get(start + i + 2) == Some(&b'\n')))
    }
}

impl Split for RequestHead {
    fn split(&mut self, buf: &mut BytesMut, _max: usize) -> Result<Option<BytesMut>> {
        if buf.is_empty() {
            return Ok(None);
        }
        let ended = self.blank_line(buf);
        if !ended && self.checked {
            if buf.len() > self.limits.max_head {
                return Err(self.refuse(Refusal::TooLarge, buf));
            }
            return Ok(None);
        }
        self.checked = true;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers[..self.limits.max_headers]);
        match request.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len <= self.limits.max_head => {
                self.scanned = 0;
                self.checked = false;
                Ok(Some(buf.split_to(len)))
            }
            Ok(httparse::Status::Complete(_)) => Err(self.refuse(Refusal::TooLarge, buf)),
            Ok(httparse::Status::Partial) if buf.len() > self.limits.max_head => {
                Err(self.refuse(Refusal::TooLarge, buf))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(self.refuse(Refusal::TooManyHeaders, buf)),
            Err(e) => Err(self.refuse(Refusal::Malformed(describe(e)), buf)),
        }
    }
}

/// What an httparse error means, in words (its type is not ours to expose).
fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::Version => "not HTTP/1.0 or HTTP/1.1",
        _ => "not an HTTP/1.x request head",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(head: &mut RequestHead, bytes: &[u8], step: usize) -> Result<Vec<BytesMut>> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(step) {
            buf.extend_from_slice(chunk);
            while let Some(h) = head.split(&mut buf, 0)? {
                out.push(h);
            }
        }
        Ok(out)
    }

    #[test]
    fn heads_split_whatever_the_reads_and_pipelined_heads_come_apart() {
        let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.0\n\n";
        for step in [1, 2, 3, 5, 7, 64] {
            let mut head = RequestHead::new(Limits::default());
            let heads = split_all(&mut head, two, step).unwrap();
            assert_eq!(heads.len(), 2, "step {step}");
            assert_eq!(&heads[0][..], b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(&heads[1][..], b"HEAD /b HTTP/1.0\n\n");
        }
    }

    #[test]
    fn over_the_limits_is_431_and_garbage_is_400_early() {
        let mut head = RequestHead::new(Limits::default().max_head(64));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend([b'a'; 100]);
        let err = split_all(&mut head, &big, 10).unwrap_err();
        assert!(err.is_frame_too_large());
        assert_eq!(head.refusal(), Some(Refusal::TooLarge));

        let mut head = RequestHead::new(Limits::default().max_headers(2));
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert!(split_all(&mut head, many, 64).is_err());
        assert_eq!(head.refusal(), Some(Refusal::TooManyHeaders));
        assert_eq!(head.refusal().unwrap().status(), 431);

        // Refused on the first bytes, long before the size limit.
        let mut head = RequestHead::new(Limits::default());
        assert!(split_all(&mut head, b"\0\0\0\x05hello", 64).is_err());
        assert!(matches!(head.refusal(), Some(Refusal::Malformed(_))));
    }

    #[test]
    fn the_buffer_never_holds_more_than_the_limit_plus_one_read() {
        let mut head = RequestHead::new(Limits::default().max_head(1000));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert!(head.split(&mut buf, 0).unwrap().is_none());
        let mut refused = false;
        for _ in 0..10_000 {
            buf.extend_from_slice(b"x");
            if head.split(&mut buf, 0).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused && buf.len() == 1001, "{}", buf.len());
    }
}
