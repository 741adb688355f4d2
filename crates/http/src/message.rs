//! [`Request`] and [`Response`]: what a [`Handler`](crate::Handler) sees and
//! answers, and how a response becomes bytes.

use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use enchufe_framing::BoxError;
use futures::{Stream, TryStreamExt};
use tokio::io::AsyncRead;

use crate::rules::{self, Framing};
use crate::{Body, Refusal};

/// A request, its head parsed and checked against the rules table (see
/// [`Refusal`]): method, path, authority, version, headers, and its body
/// streamed as it arrives.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `HEAD`, ... as sent (one of the methods the server knows).
    pub method: String,
    /// The path and query of the target: `/index.html?x=1`, also when the
    /// target was sent in absolute form (`http://host/index.html?x=1`);
    /// `*` for `OPTIONS *`.
    pub path: String,
    /// Who the request is for: the authority of an absolute-form target,
    /// else the `Host` header (RFC 9112 §3.2.2: the target's wins); `None`
    /// on an HTTP/1.0 request without either.
    pub authority: Option<String>,
    /// The minor version: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    /// Header lines in order, names as sent (compare them ignoring case,
    /// as [`Request::header`] does).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (`Content-Length` or chunked), read from the connection
    /// as the handler reads it; [`Body::empty`] when there is none.
    pub body: Body,
}

impl Request {
    /// Parses one whole head, as [`RequestHead`](crate::RequestHead) cuts
    /// it (so the limits are already checked), and applies the rules
    /// table.
    ///
    /// # Errors
    /// A [`Refusal`] when it is not a complete HTTP/1.x head or breaks a
    /// rule.
    pub fn parse(head: &[u8]) -> Result<Request, Refusal> {
        Request::parse_framed(head).map(|(request, _)| request)
    }

    /// [`Request::parse`], with how the body that follows is delimited.
    pub(crate) fn parse_framed(head: &[u8]) -> Result<(Request, Framing), Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; crate::head::MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(Refusal::Malformed("incomplete head")),
            Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooManyHeaders),
            Err(_) => return Err(Refusal::Malformed("not an HTTP/1.x request head")),
        }
        let framing = rules::check(&request)?;
        let method = request.method.unwrap_or_default();
        let (path, authority) = rules::target(method, request.path.unwrap_or_default())?;
        let authority = authority.map(str::to_owned).or_else(|| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(|v| v.trim().to_owned())
        });
        let request = Request {
            method: method.to_owned(),
            path: path.into_owned(),
            authority,
            version: request.version.unwrap_or_default(),
            headers: request
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            body: Body::empty(),
        };
        Ok((request, framing))
    }

    /// The first header of this name (any case), if valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether the connection stays open after the reply: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .filter_map(|(_, v)| std::str::from_utf8(v).ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.version >= 1 {
            !has("close")
        } else {
            has("keep-alive")
        }
    }
}

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
    /// Header lines to send, in order.
    pub headers: Vec<(String, String)>,
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
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The reply's bytes: status line, headers, `Content-Length`,
    /// `Connection` when it differs from the version's default, blank line,
    /// body unless `head_only`. Header lines that hold a CR or LF (they would
    /// end the header early and let a value forge others) are left out.
    pub(crate) fn encode(&self, version: u8, keep_alive: bool, head_only: bool) -> Bytes {
        let mut out = BytesMut::with_capacity(128 + self.body.len());
        let status = self.status.clamp(100, 999);
        out.put_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("date"))
        {
            crate::date::put(&mut out);
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
            out.put_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        match &self.stream {
            None => out.put_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes()),
            Some(Streamed { len: Some(n), .. }) => {
                out.put_slice(format!("Content-Length: {n}\r\n").as_bytes())
            }
            // HTTP/1.0 has no chunked: the close ends the body.
            Some(_) if version >= 1 => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
            Some(_) => {}
        }
        match (version, keep_alive) {
            (1.., false) => out.put_slice(b"Connection: close\r\n"),
            (0, true) => out.put_slice(b"Connection: keep-alive\r\n"),
            _ => {}
        }
        out.put_slice(b"\r\n");
        if !head_only && self.stream.is_none() {
            out.put_slice(&self.body);
        }
        out.freeze()
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
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let parse = |h: &str| Request::parse(h.as_bytes()).unwrap();
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive());
        assert!(!parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").keep_alive());
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(parse("GET / HTTP/1.0\r\nconnection: x, Keep-Alive\r\n\r\n").keep_alive());
    }

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
