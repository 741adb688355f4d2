//! [`Request`]: what a [`Handler`](crate::Handler) sees: the head as the
//! connection read it (one [`Bytes`]) and where its parts are, so parsing
//! allocates nothing per header, and the body streamed as it arrives.

use bytes::Bytes;

use crate::rules::{self, Framing};
use crate::{Body, Refusal};

/// A request, its head parsed and checked against the rules table (see
/// [`Refusal`]): method, path, authority, version, headers, and its body
/// streamed as it arrives.
///
/// The head is kept as the bytes that arrived, with the offsets of its
/// parts: the accessors borrow from it, nothing is copied per header.
///
/// ```
/// use enchufe::http::Request;
/// let request = Request::parse(b"GET /hola?x=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n")?;
/// assert_eq!(request.method(), "GET");
/// assert_eq!(request.path(), "/hola?x=1");
/// assert_eq!(request.authority(), Some("example.com"));
/// assert_eq!(request.header("x-a"), Some("1"));
/// assert_eq!(request.headers().count(), 2);
/// # Ok::<(), enchufe::http::Refusal>(())
/// ```
pub struct Request {
    /// The whole head, request line to blank line.
    head: Bytes,
    /// Where its parts are.
    layout: Layout,
    /// The body (`Content-Length` or chunked), read from the connection
    /// as the handler reads it; [`Body::empty`] when there is none.
    pub body: Body,
}

/// A part of the head: `start..end` in its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a slice of `head`.
    fn of(head: &[u8], part: &[u8]) -> Span {
        // Address arithmetic on two slices of one buffer; `part` was cut
        // from `head` by httparse, so it lies within it.
        let start = (part.as_ptr() as usize).saturating_sub(head.as_ptr() as usize);
        let start = start.min(head.len());
        let end = (start + part.len()).min(head.len());
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    fn get(self, head: &[u8]) -> &[u8] {
        head.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    fn text(self, head: &[u8]) -> &str {
        // Every span is of a part httparse checked (a token, a target of
        // visible ASCII) or of an ASCII framing header: valid UTF-8.
        std::str::from_utf8(self.get(head)).unwrap_or_default()
    }
}

/// The path as the handler sees it: part of the head, or (an absolute-form
/// target without one, `http://h?x`) made up as `/` plus the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Path {
    At(Span),
    Made(Box<str>),
}

/// The most headers a head may carry whatever
/// [`Limits::max_headers`](crate::Limits::max_headers) says: the parser's
/// header array lives on the stack (32 bytes each, 4 KiB).
pub const MAX_HEADERS: usize = 128;

/// What parsing a head learnt, as offsets into it: the [`Request`]'s parts
/// and what the server needs to frame its body and its reply. Made once,
/// by the codec as it cuts the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// One of the methods the rules table lets through, as a constant:
    /// asking for it costs no UTF-8 check.
    method: &'static str,
    path: Path,
    authority: Option<Span>,
    /// Where the header lines begin (after the request line).
    headers: u32,
    /// The minor version: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub(crate) version: u8,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// `Expect: 100-continue` on HTTP/1.1 (ignored on 1.0, RFC 9110 §10.1.1).
    pub(crate) expect: bool,
    /// Whether the client asked to keep the connection: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub(crate) keep_alive: bool,
    /// `HEAD`: the reply carries no body.
    pub(crate) head_only: bool,
}

impl Layout {
    /// Parses one whole head and lays it out.
    pub(crate) fn parse(head: &[u8]) -> Result<Layout, Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => Layout::new(head, &request),
            Ok(httparse::Status::Partial) => Err(Refusal::Malformed("incomplete head")),
            Err(httparse::Error::TooManyHeaders) => Err(Refusal::TooManyHeaders),
            Err(_) => Err(Refusal::Malformed("not an HTTP/1.x request head")),
        }
    }

    /// The layout of `head` as httparse parsed it into `request`, after the
    /// rules table.
    pub(crate) fn new(head: &[u8], request: &httparse::Request<'_, '_>) -> Result<Layout, Refusal> {
        let checked = rules::check(request)?;
        let method = request.method.unwrap_or_default();
        let target = request.path.unwrap_or_default();
        let (path, authority) = rules::target(method, target)?;
        let path = match path {
            std::borrow::Cow::Borrowed(path) => Path::At(Span::of(head, path.as_bytes())),
            std::borrow::Cow::Owned(path) => Path::Made(path.into_boxed_str()),
        };
        let authority = match authority {
            Some(authority) => Some(Span::of(head, authority.as_bytes())),
            None => checked.host.map(|host| Span::of(head, host.trim_ascii())),
        };
        let version = request.version.unwrap_or_default();
        // The header lines begin after the request line, which begins
        // with the method: httparse skips empty lines before it.
        let line = Span::of(head, method.as_bytes()).start as usize;
        let method = rules::METHODS
            .into_iter()
            .find(|known| *known == method)
            .ok_or(Refusal::UnknownMethod)?;
        let headers = head[line..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |i| line + i + 1);
        Ok(Layout {
            method,
            path,
            authority,
            headers: headers as u32,
            version,
            framing: checked.framing,
            expect: version >= 1 && checked.expect,
            keep_alive: if version >= 1 {
                !checked.close
            } else {
                checked.keep_alive
            },
            head_only: method == "HEAD",
        })
    }
}

impl Request {
    /// Parses one whole head, as [`RequestHead`](crate::RequestHead) cuts
    /// it (so the limits are already checked), and applies the rules
    /// table. (The server does not call this: its codec parses each head
    /// once, as it cuts it.)
    ///
    /// # Errors
    /// A [`Refusal`] when it is not a complete HTTP/1.x head or breaks a
    /// rule.
    pub fn parse(head: &[u8]) -> Result<Request, Refusal> {
        let layout = Layout::parse(head)?;
        Ok(Request::new(Bytes::copy_from_slice(head), layout))
    }

    /// The request whose head is `head`, laid out by [`Layout::new`].
    pub(crate) fn new(head: Bytes, layout: Layout) -> Request {
        Request {
            head,
            layout,
            body: Body::empty(),
        }
    }

    /// `GET`, `HEAD`, ... as sent (one of the methods the server knows).
    pub fn method(&self) -> &str {
        self.layout.method
    }

    /// The path and query of the target: `/index.html?x=1`, also when the
    /// target was sent in absolute form (`http://host/index.html?x=1`);
    /// `*` for `OPTIONS *`.
    pub fn path(&self) -> &str {
        match &self.layout.path {
            Path::At(span) => span.text(&self.head),
            Path::Made(path) => path,
        }
    }

    /// Who the request is for: the authority of an absolute-form target,
    /// else the `Host` header (RFC 9112 §3.2.2: the target's wins); `None`
    /// on an HTTP/1.0 request without either.
    pub fn authority(&self) -> Option<&str> {
        self.layout.authority.map(|span| span.text(&self.head))
    }

    /// The minor version: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub fn version(&self) -> u8 {
        self.layout.version
    }

    /// Header lines in order, names as sent (compare them ignoring case,
    /// as [`Request::header`] does), values without the whitespace around
    /// them.
    pub fn headers(&self) -> Headers<'_> {
        let start = (self.layout.headers as usize).min(self.head.len());
        Headers {
            rest: &self.head[start..],
        }
    }

    /// The first header of this name (any case), if valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether the connection stays open after the reply: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        self.layout.keep_alive
    }

    /// The head as it arrived, request line through the blank line.
    pub fn head(&self) -> &[u8] {
        &self.head
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("authority", &self.authority())
            .field("version", &self.version())
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body", &self.body)
            .finish()
    }
}

/// The header lines of a [`Request`], in order: `(name, value)`, read off
/// the head as it arrived ([`Request::headers`]).
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    /// The head from the next header line on.
    rest: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // httparse checked these lines: each is `name:value` ended by CRLF
        // or LF (no folding in requests), the name a token; the blank line
        // ends them. Its value is without the spaces and tabs around it,
        // as httparse gives it.
        let end = self.rest.iter().position(|&b| b == b'\n')?;
        let line = &self.rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.rest = &self.rest[end + 1..];
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            self.rest = &[];
            return None;
        };
        let name = std::str::from_utf8(&line[..colon]).unwrap_or_default();
        let value = trim(&line[colon + 1..]);
        Some((name, value))
    }
}

/// `value` without the spaces and tabs around it.
fn trim(value: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
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
        assert!(!parse("GET / HTTP/1.0\r\nconnection: x\r\nX: keep-alive\r\n\r\n").keep_alive());
    }

    /// The header lines read off the head are httparse's, whatever the
    /// line ends, blanks around values, empty values and obs-text.
    #[test]
    fn headers_are_what_httparse_parsed() {
        let heads: [&[u8]; 7] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\nHost:a\nX-Empty:\nX-Blank:  \t \nX-Tab:\tv w\t \n\n",
            b"POST /p HTTP/1.1\r\nHost:  h:8080  \r\nContent-Length: 3\r\nX-Obs: \xc3\xa9\xff\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nA: 1\r\nA: 2\r\nx-y-z: a:b:c\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nX: \"q\" , r\r\n\r\n",
        ];
        for head in heads {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Request::new(&mut headers);
            assert!(parsed.parse(head).unwrap().is_complete(), "{head:?}");
            let want: Vec<(&str, &[u8])> =
                parsed.headers.iter().map(|h| (h.name, h.value)).collect();
            let request = Request::parse(head).unwrap();
            let got: Vec<(&str, &[u8])> = request.headers().collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn the_parts_borrow_from_the_head_and_an_absolute_target_splits() {
        let request =
            Request::parse(b"GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
                .unwrap();
        assert_eq!(request.path(), "/p?q=1");
        assert_eq!(request.authority(), Some("example.com:8080"));
        let request = Request::parse(b"GET HTTP://h?x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(request.path(), "/?x");
        assert_eq!(request.authority(), Some("h"));
        let request = Request::parse(b"HEAD /a HTTP/1.1\r\nHost:  spaced \r\n\r\n").unwrap();
        assert_eq!(request.method(), "HEAD");
        assert_eq!(request.authority(), Some("spaced"));
        assert_eq!(request.version(), 1);
        assert_eq!(request.header("HOST"), Some("spaced"));
        assert_eq!(request.header("x"), None);
        let request = Request::parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((request.authority(), request.version()), (None, 0));
    }
}
