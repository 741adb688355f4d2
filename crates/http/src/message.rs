//! [`Response`]: what a [`Handler`](crate::Handler) answers, and how it
//! becomes bytes.

use std::borrow::Cow;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use enchufe_framing::BoxError;
use futures::{Stream, TryStreamExt};
use tokio::io::AsyncRead;

use crate::date::Date;

/// A reply: status, headers, body. The server adds `Date`,
/// `Content-Length` (or `Transfer-Encoding: chunked` for a streamed body
/// of unknown length) and, when it closes, `Connection: close`; headers of
/// the framing names set here are dropped, since the server owns the
/// framing.
///
/// The body is either in memory ([`Response::body`]) or streamed
/// ([`Response::stream`], [`Response::reader`]): chunks are written as
/// they come, within the connection's output budget, so memory stays
/// bounded whatever the length.
///
/// ```
/// use enchufe::http::Response;
/// let reply = Response::text(404, "no such page\n").header("Cache-Control", "no-store");
/// assert_eq!(reply.status, 404);
/// ```
#[derive(Debug)]
pub struct Response {
    /// The status code (`200`, `404`, ...).
    pub status: u16,
    /// Header lines to send, in order (a `&'static str` is kept as it is,
    /// not copied).
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The body (not sent in reply to `HEAD`, though its length is).
    /// Ignored when the body is streamed.
    pub body: Bytes,
    /// A streamed body, written after the head as its chunks come.
    pub(crate) stream: Option<Streamed>,
}

/// A streamed body's chunks: an error ends the reply (the connection is
/// closed, so the client sees it cut short).
pub(crate) type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// A streamed body and its declared length, if any.
pub(crate) struct Streamed {
    /// `Some(n)`: sent with `Content-Length: n` (the stream must give
    /// exactly `n` bytes, else the connection is closed); `None`: chunked
    /// on HTTP/1.1, delimited by the close on HTTP/1.0.
    pub(crate) len: Option<u64>,
    /// The chunks.
    pub(crate) chunks: Chunks,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// A reply of this status and body, no headers.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            stream: None,
        }
    }

    /// A reply whose body is `chunks`, written as they come: with
    /// `Transfer-Encoding: chunked` on HTTP/1.1 (on HTTP/1.0, delimited by
    /// closing the connection). An error from the stream ends the reply
    /// cut short and closes the connection. A request's
    /// [`Body`](crate::Body) is such a stream, so this echoes a request
    /// of any length in bounded memory:
    ///
    /// ```
    /// use enchufe::http::{Request, Response};
    /// async fn echo(request: Request) -> Response {
    ///     Response::stream(200, request.body)
    /// }
    /// ```
    pub fn stream<S, E>(status: u16, chunks: S) -> Response
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let mut reply = Response::new(status, Bytes::new());
        reply.stream = Some(Streamed {
            len: None,
            chunks: Box::pin(chunks.map_err(Into::into)),
        });
        reply
    }

    /// A reply whose body is read from `reader` (a file, a pipe) in chunks
    /// and written as they come, as [`Response::stream`].
    pub fn reader(status: u16, reader: impl AsyncRead + Send + 'static) -> Response {
        Response::stream(status, tokio_util::io::ReaderStream::new(reader))
    }

    /// Declares a streamed body's length: sent with `Content-Length`
    /// instead of chunked. A stream that gives more or fewer bytes closes
    /// the connection (the client sees the reply cut short). No effect on
    /// a body in memory.
    pub fn length(mut self, len: u64) -> Response {
        if let Some(stream) = &mut self.stream {
            stream.len = Some(len);
        }
        self
    }

    /// Whether the body is streamed.
    pub fn is_streamed(&self) -> bool {
        self.stream.is_some()
    }

    /// A `text/plain; charset=utf-8` reply.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, body.into()).header("Content-Type", "text/plain; charset=utf-8")
    }

    /// Adds a header line.
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The reply's bytes, head and body (unless `head_only`), with a
    /// `Date` of now: for replies off the hot path (refusals, tests).
    pub(crate) fn encode(&self, version: u8, keep_alive: bool, head_only: bool) -> Bytes {
        let mut out = BytesMut::new();
        let mut date = Date::default();
        date.refresh();
        self.encode_head(&mut out, version, keep_alive, &date);
        if !head_only && self.stream.is_none() {
            out.extend_from_slice(&self.body);
        }
        out.freeze()
    }

    /// Appends the reply's head to `out`: status line, `Date` (unless the
    /// handler set one), headers, `Content-Length` (or chunked),
    /// `Connection` when it differs from the version's default, blank line.
    /// Header lines that hold a CR or LF (they would end the header early
    /// and let a value forge others) are left out. Appended byte by byte,
    /// no formatting machinery: this runs once per reply.
    pub(crate) fn encode_head(
        &self,
        out: &mut BytesMut,
        version: u8,
        keep_alive: bool,
        date: &Date,
    ) {
        let status = self.status.clamp(100, 999);
        let reason = reason(status);
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        out.reserve(96 + reason.len() + headers);
        let digits = [
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&digits);
        out.extend_from_slice(b" ");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("date"))
        {
            out.extend_from_slice(date.line());
        }
        for (name, value) in &self.headers {
            let owned = ["content-length", "connection", "transfer-encoding"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h));
            let broken = name.is_empty()
                || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':')
                || value.bytes().any(|b| b == b'\r' || b == b'\n');
            if owned || broken {
                tracing::debug!(%name, "header left out of the reply");
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let mut number = itoa::Buffer::new();
        match &self.stream {
            None => {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(number.format(self.body.len()).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Some(Streamed { len: Some(n), .. }) => {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(number.format(*n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            // HTTP/1.0 has no chunked: the close ends the body.
            Some(_) if version >= 1 => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Some(_) => {}
        }
        match (version, keep_alive) {
            (1.., false) => out.extend_from_slice(b"Connection: close\r\n"),
            (0, true) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The reason phrase of the codes this crate sends or handlers commonly do.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_their_length_and_no_forged_headers() {
        let reply = Response::text(200, "hola")
            .header("X-Ok", "1")
            .header("X-Bad", "a\r\nSet-Cookie: evil")
            .header("Content-Length", "999");
        let head = reply.encode(0, true, true);
        let bytes = reply.header("Date", "today").encode(1, false, false);
        assert_eq!(
            &bytes[..],
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-Ok: 1\r\n\
               Date: today\r\nContent-Length: 4\r\nConnection: close\r\n\r\nhola"[..]
        );
        assert!(head.starts_with(b"HTTP/1.1 200 OK\r\nDate: "), "{head:?}");
        assert!(head.ends_with(b"Content-Length: 4\r\nConnection: keep-alive\r\n\r\n"));
    }
}
