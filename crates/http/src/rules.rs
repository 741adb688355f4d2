//! The request rules: what a head must satisfy before a handler sees it,
//! the RFC 9112 framing rules among them, as one table: the rows are the
//! [`Refusal`] variants (the table is on that type), checked by
//! [`check`] after httparse's grammar and by
//! [`RequestHead`](crate::RequestHead) for sizes and versions.

/// Why a request was refused: one row of the rules table, the reply a
/// server owes before it closes. Every refusal closes the connection: a
/// request whose end cannot be trusted leaves no place to read the next
/// one from.
///
/// | rule (RFC)                                                        | refusal                  | status |
/// |-------------------------------------------------------------------|--------------------------|--------|
/// | head over `Limits::max_head` bytes                                | `TooLarge`               | 431    |
/// | over `Limits::max_headers` header lines                           | `TooManyHeaders`         | 431    |
/// | request line alone over `Limits::max_head` (9112 §3)              | `TargetTooLong`          | 414    |
/// | not an HTTP/1.x head (httparse's grammar; 9112 §2–5)             | `Malformed`              | 400    |
/// | `HTTP/2.0` or another major (`HTTP/1.x`, x > 1, is 1.1; 9110 §2.5)| `VersionNotSupported`    | 505    |
/// | a method this server does not know, `CONNECT` too (9110 §9.1)     | `UnknownMethod`          | 501    |
/// | target not origin-, absolute- or (`OPTIONS`) asterisk-form (9112 §3.2) | `BadTarget`         | 400    |
/// | no `Host` on 1.1, or more than one (9112 §3.2)                    | `HostCount`              | 400    |
/// | non-ASCII byte in a framing header (`Host`, `Content-Length`, `Transfer-Encoding`, `Connection`, `Expect`) | `NonAsciiFraming` | 400 |
/// | `Content-Length` not a plain decimal (9112 §6.3)                  | `BadContentLength`       | 400    |
/// | `Content-Length` values that differ (9112 §6.3)                   | `DifferingContentLength` | 400    |
/// | both `Content-Length` and `Transfer-Encoding` (9112 §6.1, §11.2)  | `LengthAndEncoding`      | 400    |
/// | `Transfer-Encoding` on HTTP/1.0 (9112 §6.1)                       | `EncodingOnHttp10`       | 400    |
/// | `Transfer-Encoding` whose final coding is not `chunked`, or `chunked` twice (9112 §6.1, §6.3) | `NotChunked` | 400 |
/// | a coding before the final `chunked` (`gzip, chunked`): not decoded here (9112 §6.1) | `UnsupportedEncoding` | 501 |
/// | `Expect` other than `100-continue` (9110 §10.1.1)                  | `UnknownExpectation`     | 417    |
/// | a body over `Config::max_body` (declared, or as chunks arrive)    | `BodyTooLarge`           | 413    |
/// | a chunk size that is not hex, a chunk not ended by CRLF, trailers over the head limits (9112 §7.1) | `BadChunk` | 400 |
///
/// Absolute-form targets (`GET http://host/path`) are accepted: the
/// handler gets the path in [`Request::path`](crate::Request::path) and
/// the authority in [`Request::authority`](crate::Request::authority)
/// (which is otherwise the `Host` header's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Over [`Limits::max_head`](crate::Limits::max_head) bytes (`431`).
    TooLarge,
    /// Over [`Limits::max_headers`](crate::Limits::max_headers) headers
    /// (`431`).
    TooManyHeaders,
    /// The request line alone is over
    /// [`Limits::max_head`](crate::Limits::max_head) (`414 URI Too Long`).
    TargetTooLong,
    /// Not an HTTP/1.x request head; what was wrong (`400`).
    Malformed(&'static str),
    /// An HTTP version whose major is not 1 (`505`).
    VersionNotSupported,
    /// A method this server does not implement (`501`).
    UnknownMethod,
    /// A request target in no form this server accepts (`400`).
    BadTarget,
    /// No `Host` header on HTTP/1.1, or more than one (`400`).
    HostCount,
    /// A byte outside visible ASCII in a header that frames the request
    /// (`400`).
    NonAsciiFraming,
    /// A `Content-Length` that is not a plain decimal number (`400`).
    BadContentLength,
    /// `Content-Length` values that differ (`400`).
    DifferingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` (`400`).
    LengthAndEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request (`400`).
    EncodingOnHttp10,
    /// A `Transfer-Encoding` whose final coding is not `chunked`, or with
    /// `chunked` more than once: the body's end cannot be known (`400`).
    NotChunked,
    /// A `Transfer-Encoding` with a coding before the final `chunked`
    /// (`gzip, chunked`), which this server does not decode (`501`).
    UnsupportedEncoding,
    /// An `Expect` other than `100-continue` (`417`).
    UnknownExpectation,
    /// A body over [`Config::max_body`](crate::Config::max_body) (`413`).
    BodyTooLarge,
    /// A broken chunked body: a chunk size that is no hex number (or whose
    /// line is too long), a chunk not ended by CRLF, trailers over the head
    /// limits (`400`).
    BadChunk,
}

impl Refusal {
    /// The status code that answers it.
    pub fn status(self) -> u16 {
        match self {
            Refusal::TooLarge | Refusal::TooManyHeaders => 431,
            Refusal::TargetTooLong => 414,
            Refusal::VersionNotSupported => 505,
            Refusal::UnknownMethod | Refusal::UnsupportedEncoding => 501,
            Refusal::UnknownExpectation => 417,
            Refusal::BodyTooLarge => 413,
            Refusal::Malformed(_)
            | Refusal::BadTarget
            | Refusal::HostCount
            | Refusal::NonAsciiFraming
            | Refusal::BadContentLength
            | Refusal::DifferingContentLength
            | Refusal::LengthAndEncoding
            | Refusal::EncodingOnHttp10
            | Refusal::NotChunked
            | Refusal::BadChunk => 400,
        }
    }
}

/// How the request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (`Content-Length`; no header is 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The methods this server implements (RFC 9110 §9 and PATCH, RFC 5789);
/// `CONNECT` is not among them (no tunnels).
pub(crate) const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
];

/// The headers that say where a request ends or who it is for.
const FRAMING: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
];

/// What the table's header rows found in a head they accepted: the body's
/// framing and the few header facts the server acts on, so no header is
/// looked up again once the head is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked<'h> {
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// The `Host` header's value, if there is one (there is at most one).
    pub(crate) host: Option<&'h [u8]>,
    /// An `Expect: 100-continue` (any other expectation is refused).
    pub(crate) expect: bool,
    /// A `Connection` header lists `close`.
    pub(crate) close: bool,
    /// A `Connection` header lists `keep-alive`.
    pub(crate) keep_alive: bool,
}

/// Applies the table (the rows after the parser's) to a parsed head:
/// the body's framing and the header facts, or the refusal.
pub(crate) fn check<'h>(request: &httparse::Request<'_, 'h>) -> Result<Checked<'h>, Refusal> {
    let method = request.method.unwrap_or_default();
    if !METHODS.contains(&method) {
        return Err(Refusal::UnknownMethod);
    }
    let version = request.version.unwrap_or_default();
    let mut hosts = 0;
    let mut checked = Checked {
        framing: Framing::Length(0),
        host: None,
        expect: false,
        close: false,
        keep_alive: false,
    };
    let mut length: Option<u64> = None;
    let mut encodings: Vec<&str> = Vec::new();
    for header in request.headers.iter() {
        let name = header.name;
        let framing = FRAMING.iter().any(|h| name.eq_ignore_ascii_case(h));
        if !framing {
            continue;
        }
        let Some(value) = ascii(header.value) else {
            return Err(Refusal::NonAsciiFraming);
        };
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            checked.host = Some(header.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            // A list of equal values is one value (RFC 9110 §8.6 allows
            // taking it so; hyper refuses it instead).
            for item in value.split(',') {
                let n = decimal(item.trim()).ok_or(Refusal::BadContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Refusal::DifferingContentLength);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            encodings.extend(value.split(',').map(str::trim).filter(|c| !c.is_empty()));
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.trim().eq_ignore_ascii_case("100-continue") {
                return Err(Refusal::UnknownExpectation);
            }
            checked.expect = true;
        } else {
            for token in value.split(',').map(str::trim) {
                checked.close |= token.eq_ignore_ascii_case("close");
                checked.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    if hosts > 1 || (hosts == 0 && version >= 1) {
        return Err(Refusal::HostCount);
    }
    if encodings.is_empty() {
        checked.framing = Framing::Length(length.unwrap_or(0));
        return Ok(checked);
    }
    if length.is_some() {
        return Err(Refusal::LengthAndEncoding);
    }
    if version == 0 {
        return Err(Refusal::EncodingOnHttp10);
    }
    // RFC 9112 §6.3: without a final `chunked` the body's end cannot be
    // known (400, MUST); §6.1: `chunked` is applied once only; a coding
    // before it is one this server does not decode (501, SHOULD).
    let is_chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
    match encodings.split_last() {
        Some((last, before)) if is_chunked(last) && !before.iter().any(is_chunked) => {
            if before.is_empty() {
                checked.framing = Framing::Chunked;
                Ok(checked)
            } else {
                Err(Refusal::UnsupportedEncoding)
            }
        }
        _ => Err(Refusal::NotChunked),
    }
}

/// A header value as text if every byte is visible ASCII, space or tab.
fn ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// `1*DIGIT` as a number: no sign, no space, no overflow.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A request target split into the path the handler routes on and the
/// authority an absolute-form target names (RFC 9112 §3.2).
pub(crate) fn target<'a>(
    method: &str,
    target: &'a str,
) -> Result<(std::borrow::Cow<'a, str>, Option<&'a str>), Refusal> {
    use std::borrow::Cow;
    if target.starts_with('/') {
        return Ok((Cow::Borrowed(target), None));
    }
    if target == "*" && method == "OPTIONS" {
        return Ok((Cow::Borrowed(target), None));
    }
    let scheme_end = target.find("://").ok_or(Refusal::BadTarget)?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Refusal::BadTarget);
    }
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        // userinfo is forbidden in http(s) URIs (RFC 9110 §4.2.4).
        return Err(Refusal::BadTarget);
    }
    let path = match path.as_bytes().first() {
        Some(b'/') => Cow::Borrowed(path),
        _ => Cow::Owned(format!("/{path}")),
    };
    Ok((path, Some(authority)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(head: &str) -> Result<Framing, Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        request.parse(head.as_bytes()).unwrap();
        check(&request).map(|c| c.framing)
    }

    fn raw(head: &[u8]) -> Result<Framing, Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        request.parse(head).unwrap();
        check(&request).map(|c| c.framing)
    }

    #[test]
    fn each_row_of_the_table_refuses_its_shape() {
        use Refusal::*;
        let cases: [(&str, Result<Framing, Refusal>); 18] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Framing::Length(0))),
            ("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", Err(UnknownMethod)),
            ("CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n", Err(UnknownMethod)),
            ("GET / HTTP/1.1\r\n\r\n", Err(HostCount)),
            ("GET / HTTP/1.0\r\n\r\n", Ok(Framing::Length(0))),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err(HostCount)),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
                Err(DifferingContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n",
                Ok(Framing::Length(5)),
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Err(BadContentLength)),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", Err(BadContentLength)),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Err(BadContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(LengthAndEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Err(NotChunked),
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", Err(NotChunked)),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(NotChunked),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(UnsupportedEncoding),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Ok(Framing::Chunked),
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(EncodingOnHttp10),
            ),
        ];
        for (head, want) in cases {
            assert_eq!(run(head), want, "{head:?}");
        }
        assert_eq!(
            raw(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xff41\r\n\r\n"),
            Err(NonAsciiFraming)
        );
        assert_eq!(
            raw(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\xff\r\n\r\n"),
            Err(NonAsciiFraming)
        );
        assert_eq!(
            raw(b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n"),
            Err(NonAsciiFraming)
        );
        // Outside the framing headers, obs-text is the handler's business.
        assert!(raw(b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: \xc3\xa9\r\n\r\n").is_ok());
    }

    #[test]
    fn targets_in_absolute_form_give_the_path_and_the_authority_apart() {
        assert_eq!(target("GET", "/a?b").unwrap(), ("/a?b".into(), None));
        assert_eq!(
            target("GET", "http://example.com:8080/p/q?x=1").unwrap(),
            ("/p/q?x=1".into(), Some("example.com:8080"))
        );
        assert_eq!(
            target("GET", "HTTP://h?x").unwrap(),
            ("/?x".into(), Some("h"))
        );
        assert_eq!(target("GET", "https://h").unwrap(), ("/".into(), Some("h")));
        assert_eq!(target("OPTIONS", "*").unwrap(), ("*".into(), None));
        for bad in ["*", "h/p", "ftp://h/", "http:///p", "http://u@h/"] {
            assert_eq!(target("GET", bad), Err(Refusal::BadTarget), "{bad}");
        }
    }
}
