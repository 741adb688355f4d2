//! [`RequestHead`]: the codec that finds HTTP/1.x request heads in a
//! connection's bytes, with limits, for the [`Wire`](enchufe_framing::Wire).

use bytes::{Buf, BytesMut};
use enchufe_framing::{Error, Malformed, Result, Split};

use crate::request::{Layout, MAX_HEADERS};
use crate::Refusal;

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

/// The [`Split`] of HTTP/1.x request heads: each message it cuts is one
/// whole head, request line through the blank line, checked by `httparse`
/// within [`Limits`]. After a head with a body, the server switches it to
/// cutting that body (its bytes as they arrive, then an empty message at
/// its end; chunked bodies decoded, trailers parsed within the same limits
/// and dropped), then it cuts heads again.
///
/// A head that arrives whole (the common case, pipelined heads too) is
/// parsed once, by httparse, and checked against the rules table as it is
/// cut; where its parts are is kept for the server ([`Request`](crate::Request)'s offsets
/// into it), so nothing parses it again. A head that arrives in pieces is
/// parsed when its first bytes arrive (garbage is refused at once, not
/// after 16 KiB of it) and again when its blank line does; in between only
/// the new bytes are searched for the blank line, so a head trickled a
/// byte at a time costs linear work, not quadratic. (The
/// [`Split`] trait is the engine's, not re-exported by `enchufe`: the unit
/// tests of this module show the codec at work.)
#[derive(Debug, Clone)]
pub struct RequestHead {
    limits: Limits,
    /// Bytes of the current head already searched for its blank line.
    scanned: usize,
    /// The current head's first bytes were parsed (garbage refused early).
    checked: bool,
    /// Why the last head was refused, for the server's reply.
    refused: Option<Refusal>,
    /// Where the parts of the head last cut are, until the server takes it.
    layout: Option<Layout>,
    /// Whether a body is being cut, and where in it.
    body: Mode,
    /// The most body bytes the current body may carry.
    max_body: u64,
}

/// Where the codec is: between requests (cutting a head) or inside a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Cutting the next head.
    Head,
    /// A `Content-Length` body: this many bytes left.
    Length(u64),
    /// Chunked: a chunk-size line next; the body's bytes so far.
    Size(u64),
    /// Chunked: this many bytes of the chunk left; the body's bytes so far.
    Data(u64, u64),
    /// Chunked: the CRLF after a chunk's data; the body's bytes so far.
    DataEnd(u64),
    /// Chunked: trailer lines up to the blank line.
    Trailers,
}

/// The longest chunk-size line (size and extensions) accepted: hyper's
/// bound on extensions is of the same order; a size alone is at most 16
/// hex digits.
const MAX_CHUNK_LINE: usize = 4096;

impl RequestHead {
    /// A codec with these limits.
    pub fn new(limits: Limits) -> Self {
        RequestHead {
            limits: limits.max_headers(limits.max_headers),
            scanned: 0,
            checked: false,
            refused: None,
            layout: None,
            body: Mode::Head,
            max_body: 0,
        }
    }

    /// Cuts a body next: `Some(len)` bytes of a `Content-Length` body, or
    /// `None` for a chunked one, at most `max_body` bytes in all. The
    /// messages [`Split::split`] then gives are the body's bytes as they
    /// arrive (never empty), then one empty message at its end; after that
    /// it cuts heads again.
    pub(crate) fn start_body(&mut self, len: Option<u64>, max_body: u64) {
        self.max_body = max_body;
        self.body = match len {
            Some(n) => Mode::Length(n),
            None => Mode::Size(0),
        };
    }

    /// Where the parts of the head last cut are (offsets into it), once.
    pub(crate) fn take_layout(&mut self) -> Option<Layout> {
        self.layout.take()
    }

    /// Whether a body is being cut (its end message not yet given).
    pub(crate) fn in_body(&self) -> bool {
        self.body != Mode::Head
    }

    /// The bytes a `Content-Length` body still has to arrive (`None`:
    /// chunked, or no body).
    pub(crate) fn body_left(&self) -> Option<u64> {
        match self.body {
            Mode::Length(left) => Some(left),
            _ => None,
        }
    }

    /// The next message of a body: its bytes, or the empty end.
    fn split_body(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>> {
        loop {
            match self.body {
                Mode::Head => return Ok(None),
                Mode::Length(0) => {
                    self.body = Mode::Head;
                    return Ok(Some(BytesMut::new()));
                }
                Mode::Length(_) | Mode::Data(..) if buf.is_empty() => return Ok(None),
                Mode::Length(left) => {
                    let n = left.min(buf.len() as u64);
                    self.body = Mode::Length(left - n);
                    return Ok(Some(buf.split_to(n as usize)));
                }
                Mode::Data(left, total) => {
                    let n = left.min(buf.len() as u64);
                    self.body = if n == left {
                        Mode::DataEnd(total)
                    } else {
                        Mode::Data(left - n, total)
                    };
                    return Ok(Some(buf.split_to(n as usize)));
                }
                Mode::Size(total) => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        let total = total.saturating_add(size);
                        if total > self.max_body {
                            return Err(self.refuse(Refusal::BodyTooLarge, buf));
                        }
                        self.body = if size == 0 {
                            Mode::Trailers
                        } else {
                            Mode::Data(size, total)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Err(self.refuse(Refusal::BadChunk, buf));
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Err(self.refuse(Refusal::BadChunk, buf)),
                },
                Mode::DataEnd(total) => {
                    match (buf.first(), buf.get(1)) {
                        (Some(b'\r'), Some(b'\n')) => buf.advance(2),
                        (None, _) | (Some(b'\r'), None) => return Ok(None),
                        _ => return Err(self.refuse(Refusal::BadChunk, buf)),
                    }
                    self.body = Mode::Size(total);
                }
                Mode::Trailers => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let headers = &mut headers[..self.limits.max_headers];
                    match httparse::parse_headers(buf, headers) {
                        // Trailers are read and dropped: nothing in this
                        // server acts on them (RFC 9112 §7.1.2 allows it).
                        Ok(httparse::Status::Complete((used, _))) => {
                            buf.advance(used);
                            self.body = Mode::Head;
                            return Ok(Some(BytesMut::new()));
                        }
                        Ok(httparse::Status::Partial) if buf.len() > self.limits.max_head => {
                            return Err(self.refuse(Refusal::BadChunk, buf));
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err(self.refuse(Refusal::BadChunk, buf)),
                    }
                }
            }
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
            Refusal::TooLarge | Refusal::TargetTooLong => Error::FrameTooLarge {
                declared: buf.len() as u64,
                limit: self.limits.max_head,
            },
            Refusal::BodyTooLarge => Error::FrameTooLarge {
                declared: self.max_body.saturating_add(1),
                limit: usize::try_from(self.max_body).unwrap_or(usize::MAX),
            },
            refusal => Error::Malformed(Malformed::HttpRequest(refusal.status())),
        }
    }

    /// A head over the limit: `414` when the request line alone is (its
    /// end is not within the limit), `431` otherwise.
    fn too_large(&mut self, buf: &BytesMut) -> Error {
        let line_ends = buf[..self.limits.max_head.min(buf.len())].contains(&b'\n');
        let refusal = if line_ends {
            Refusal::TooLarge
        } else {
            Refusal::TargetTooLong
        };
        self.refuse(refusal, buf)
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
        if self.body != Mode::Head {
            return self.split_body(buf);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        // The first bytes of a head are parsed at once (a whole head needs
        // no search for its end); later ones only when the blank line came.
        if self.checked && !self.blank_line(buf) {
            if buf.len() > self.limits.max_head {
                return Err(self.too_large(buf));
            }
            return Ok(None);
        }
        self.checked = true;
        let max_headers = self.limits.max_headers;
        let mut parsed = parse(buf, max_headers);
        if let Err(httparse::Error::Version) = parsed {
            match newer_minor(buf) {
                // `HTTP/1.x`, x > 1, is read as HTTP/1.1 (RFC 9110 §2.5):
                // the digit is rewritten in the buffer, so the head cut is
                // the head the handler's `Request` is parsed from.
                Some(Some(digit)) => {
                    buf[digit] = b'1';
                    parsed = parse(buf, max_headers);
                }
                Some(None) => return Err(self.refuse(Refusal::VersionNotSupported, buf)),
                None => {}
            }
        }
        match parsed {
            Ok(httparse::Status::Complete((len, layout))) if len <= self.limits.max_head => {
                self.scanned = 0;
                self.checked = false;
                match layout {
                    Ok(layout) => self.layout = Some(layout),
                    Err(refusal) => return Err(self.refuse(refusal, buf)),
                }
                Ok(Some(buf.split_to(len)))
            }
            Ok(httparse::Status::Complete(_)) => Err(self.too_large(buf)),
            Ok(httparse::Status::Partial) if buf.len() > self.limits.max_head => {
                Err(self.too_large(buf))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(self.refuse(Refusal::TooManyHeaders, buf)),
            Err(e) => Err(self.refuse(Refusal::Malformed(describe(e)), buf)),
        }
    }
}

/// httparse over `buf` with at most `max_headers` headers, and for a whole
/// head its length and its [`Layout`] (the rules table applied): the
/// header array on the stack lives only for the call, so what is kept of
/// it is offsets.
fn parse(buf: &[u8], max_headers: usize) -> httparse::Result<(usize, Result<Layout, Refusal>)> {
    // Left uninitialised (httparse writes the headers it finds): filling
    // 128 empty headers (4 KiB) per parse showed in the profile.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    Ok(
        match request.parse_with_uninit_headers(buf, &mut headers[..max_headers])? {
            httparse::Status::Complete(len) => {
                httparse::Status::Complete((len, Layout::new(&buf[..len], &request)))
            }
            httparse::Status::Partial => httparse::Status::Partial,
        },
    )
}

/// The version of a request line httparse refused: `Some(Some(i))` for
/// `HTTP/1.x` with x > 1 (`i` is the index of x), `Some(None)` for another
/// major (`HTTP/2.0`, `HTTP/3`), `None` when it is no HTTP version at all.
fn newer_minor(buf: &[u8]) -> Option<Option<usize>> {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line.iter().rposition(|&b| b == b' ')? + 1;
    let version = &line[start..];
    let rest = version.strip_prefix(b"HTTP/")?;
    match rest {
        [b'1', b'.', minor] if minor.is_ascii_digit() => Some(Some(start + 7)),
        [b'1', ..] => None,
        [major, ..] if major.is_ascii_digit() => Some(None),
        _ => None,
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
    fn newer_minors_are_1_1_other_majors_505_and_a_long_target_414() {
        for step in [1, 4, 64] {
            let mut head = RequestHead::new(Limits::default());
            let heads = split_all(&mut head, b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", step).unwrap();
            assert_eq!(
                &heads[0][..],
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                "step {step}"
            );
            for other in [&b"GET / HTTP/2.0\r\n\r\n"[..], b"GET / HTTP/3.0\r\n\r\n"] {
                let mut head = RequestHead::new(Limits::default());
                assert!(split_all(&mut head, other, step).is_err());
                assert_eq!(head.refusal(), Some(Refusal::VersionNotSupported));
            }
            let mut head = RequestHead::new(Limits::default());
            assert!(split_all(&mut head, b"GET / HTTQ/1.1\r\n\r\n", step).is_err());
            assert!(matches!(head.refusal(), Some(Refusal::Malformed(_))));
        }
        let mut head = RequestHead::new(Limits::default().max_head(100));
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(200));
        assert!(split_all(&mut head, long.as_bytes(), 7).is_err());
        assert_eq!(head.refusal().map(Refusal::status), Some(414));
        let mut head = RequestHead::new(Limits::default().max_head(100));
        let long = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", "a".repeat(200));
        assert!(split_all(&mut head, long.as_bytes(), 7).is_err());
        assert_eq!(head.refusal().map(Refusal::status), Some(431));
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
