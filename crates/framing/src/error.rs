use std::io;

/// A boxed error from a message encoder or decoder (serde, a user codec).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How bytes broke the protocol: [`Error::Malformed`]'s reason. Each is
/// its own variant, so that a caller, a counter or a test matches on what
/// happened; the text it displays is for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// A multiplexed frame broke the protocol (too short, an unknown kind, a
    /// kind that may not travel in that direction).
    Mux(crate::mux::Violation),
    /// A hello's node id is longer than
    /// [`MAX_NODE_ID`](crate::mux::MAX_NODE_ID) bytes.
    NodeIdTooLong,
    /// A streamed body got more bytes than its header declared.
    StreamTooLong,
    /// A stream's reader ended before its declared length.
    StreamTooShort,
    /// A frame was asked for while a streamed body is unread.
    StreamUnread,
    /// An HTTP request the HTTP door refused, with the status it answered
    /// (400, 431, 505...).
    HttpRequest(u16),
    /// An HTTP request's body stopped arriving before its end.
    HttpBodyStopped,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Mux(violation) => violation.fmt(f),
            Malformed::NodeIdTooLong => f.write_str("node id longer than 255 bytes"),
            Malformed::StreamTooLong => f.write_str("a stream longer than its declared length"),
            Malformed::StreamTooShort => {
                f.write_str("a stream's reader stopped before its declared length")
            }
            Malformed::StreamUnread => {
                f.write_str("a frame was asked for while a streamed body is unread")
            }
            Malformed::HttpRequest(status) => write!(f, "HTTP request refused with {status}"),
            Malformed::HttpBodyStopped => f.write_str("the request body stopped arriving"),
        }
    }
}

/// Why a frame or message could not be read or written.
///
/// Match on the variant, not on the message text: the text may change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying I/O failed (reset, broken pipe, ...).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),

    /// The other end announced a frame of more bytes than this end's
    /// `max_frame_length`. The stream cannot resync after this, so the
    /// connection ends.
    #[error(
        "the other end announced a frame of {declared} bytes, over this end's \
         max_frame_length of {limit} bytes (raise max_frame_length here, or send \
         such messages as streams: max_stream_length)"
    )]
    FrameTooLarge {
        /// The payload length the header declared.
        declared: u64,
        /// This end's limit.
        limit: usize,
    },

    /// A message to send is longer than this end's `max_frame_length`.
    /// Nothing was sent; the connection goes on.
    #[error(
        "a message of {len} bytes is over this end's max_frame_length of {limit} \
         bytes; nothing was sent (raise max_frame_length on both ends, or send it \
         as a stream)"
    )]
    TooLargeToSend {
        /// The frame's payload length (header included in the multiplexed
        /// profile).
        len: u64,
        /// This end's limit.
        limit: usize,
    },

    /// A frame header declared more than `max_frame_length` and its four
    /// bytes are the start of another protocol ([`Foreign`]): the peer is not
    /// speaking length-prefixed frames at all (a browser at a frame server,
    /// a frame client at an HTTP or SSH server). A refinement of
    /// [`Error::FrameTooLarge`], which [`Error::is_frame_too_large`] also
    /// answers for; the stream cannot go on.
    #[error(
        "the peer is not speaking length-prefixed frames: it sent \"{}\", which looks like {looks_like} \
         (read as a frame header, {declared} bytes, over the limit of {limit}); {}",
        .header.escape_ascii(),
        .looks_like.advice()
    )]
    NotFrames {
        /// What the bytes look like.
        looks_like: Foreign,
        /// The four bytes read where a frame header should have been.
        header: [u8; 4],
        /// Those bytes read as a big-endian length.
        declared: u64,
        /// The configured limit.
        limit: usize,
    },

    /// The stream ended inside a frame: the peer closed or crashed mid-message.
    /// This is not a clean close.
    #[error("stream ended inside a frame: got {received} of {expected} bytes")]
    UnexpectedEof {
        /// Bytes that frame needed: 4 if its header was incomplete, else 4 + payload length
        /// (a codec of its own, [`Split`](crate::Split): `received + 1`, at least one more).
        expected: u64,
        /// Bytes of that frame that did arrive, header included.
        received: u64,
    },

    /// A text message was not valid UTF-8.
    #[error("text message is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },

    /// A message could not be decoded from its frame (for example, JSON that
    /// does not match the expected type).
    #[error("could not decode message: {0}")]
    Decode(#[source] BoxError),

    /// The first frame of a multiplexed connection was not a hello: the
    /// other side speaks another protocol (a plain client, say).
    #[error("expected an enchufe hello; the peer speaks another protocol")]
    BadHello,

    /// The other side speaks another version of the multiplexed protocol.
    #[error("protocol version mismatch: we speak {ours}, the peer {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// Theirs.
        theirs: u8,
    },

    /// The two ends speak different profiles ([`crate::mux::Profile`]); the
    /// [`Mismatch`](crate::mux::Mismatch) says how it showed. The
    /// connection ends before any message is taken for another.
    #[error("profile mismatch: {0}")]
    ProfileMismatch(crate::mux::Mismatch),

    /// The bytes broke the protocol: a multiplexed frame too short, of an
    /// unknown kind or of a kind that may not travel in that direction, a
    /// stream of another length than declared, a refused HTTP request;
    /// [`Malformed`] says which.
    #[error("protocol violation: {0}")]
    Malformed(Malformed),

    /// A message could not be encoded into a frame.
    #[error("could not encode message: {0}")]
    Encode(#[source] BoxError),
}

impl Error {
    /// The error for an inbound header that declares more than `limit`:
    /// [`Error::NotFrames`] when its bytes look like another protocol, else
    /// [`Error::FrameTooLarge`].
    pub(crate) fn oversize_header(header: [u8; 4], limit: usize) -> Error {
        let declared = u64::from(u32::from_be_bytes(header));
        match Foreign::sniff(header) {
            Some(looks_like) => Error::NotFrames {
                looks_like,
                header,
                declared,
                limit,
            },
            None => Error::FrameTooLarge { declared, limit },
        }
    }

    /// Whether a frame's declared length was over the limit
    /// ([`Error::FrameTooLarge`], or [`Error::NotFrames`], whose header also
    /// declared too much).
    pub fn is_frame_too_large(&self) -> bool {
        matches!(
            self,
            Error::FrameTooLarge { .. } | Error::TooLargeToSend { .. } | Error::NotFrames { .. }
        )
    }

    /// Whether the two ends speak different profiles
    /// ([`Error::ProfileMismatch`]).
    pub fn is_profile_mismatch(&self) -> bool {
        matches!(self, Error::ProfileMismatch(_))
    }

    /// Whether the peer is not speaking length-prefixed frames at all
    /// ([`Error::NotFrames`]): what it sent looks like HTTP, SSH, TLS or text.
    pub fn is_not_frames(&self) -> bool {
        matches!(self, Error::NotFrames { .. })
    }

    /// What the peer speaks instead of frames ([`Error::NotFrames`]), so a
    /// program can give advice of its own (the flag that turns TLS on, say).
    pub fn looks_like(&self) -> Option<Foreign> {
        match self {
            Error::NotFrames { looks_like, .. } => Some(*looks_like),
            _ => None,
        }
    }

    /// Whether the stream ended (cleanly or inside a frame) or the
    /// connection was reset or broken.
    pub fn is_closed(&self) -> bool {
        match self {
            Error::UnexpectedEof { .. } => true,
            Error::Io(e) => is_closed_io(e),
            _ => false,
        }
    }

    /// Whether an I/O operation timed out (or no hello arrived in time).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::TimedOut)
            || matches!(
                self,
                Error::ProfileMismatch(crate::mux::Mismatch::NoHello(_))
            )
    }

    /// Whether the connection was reset (`ECONNRESET`): the other end
    /// ended it on a failure (or its host or the network did), not with a
    /// goodbye.
    pub fn is_reset(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }

    /// Whether the bytes the other end sent broke the framing or the
    /// protocol: an oversize frame, not frames at all, a stream cut inside
    /// a frame, a message that does not decode, a malformed hello or
    /// frame. (Not: our own message too large to send or that does not
    /// encode, an I/O failure, a disagreement on version or profile.)
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::FrameTooLarge { .. }
                | Error::NotFrames { .. }
                | Error::UnexpectedEof { .. }
                | Error::InvalidUtf8 { .. }
                | Error::Decode(_)
                | Error::BadHello
                | Error::Malformed(_)
        )
    }

    /// Whether this error ends the stream it happened on (as opposed to one
    /// message failing to decode or encode, after which the stream is still
    /// usable).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::FrameTooLarge { .. }
                | Error::NotFrames { .. }
                | Error::UnexpectedEof { .. }
        )
    }
}

/// An address (or path) and what went wrong there: what the server's
/// `Bind`, `Connect` and `Tls` errors hold, and the UDP crate's `Bind` and
/// `Connect` and the transfer crate's `Connect`, so each error says what was
/// tried and the where and the why are one type.
///
/// `E` is the error: the operating system's ([`io::Error`], the default) or
/// a TLS handshake's. Its text is the address, then the error's.
///
/// ```
/// use enchufe::framing::AddrError;
/// use std::io;
/// let e = AddrError::new("127.0.0.1:80", io::Error::from(io::ErrorKind::AddrInUse));
/// assert_eq!(e.addr(), "127.0.0.1:80");
/// assert_eq!(e.get_ref().kind(), io::ErrorKind::AddrInUse);
/// assert!(e.to_string().starts_with("127.0.0.1:80: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {source}")]
pub struct AddrError<E = io::Error> {
    /// The address (or path) as given.
    addr: String,
    /// What went wrong there.
    source: E,
}

impl<E> AddrError<E> {
    /// `source`, the error met at `addr`.
    pub fn new(addr: impl Into<String>, source: E) -> AddrError<E> {
        AddrError {
            addr: addr.into(),
            source,
        }
    }

    /// The address (or path) as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The error met there.
    pub fn get_ref(&self) -> &E {
        &self.source
    }

    /// The error met there, by value.
    pub fn into_inner(self) -> E {
        self.source
    }
}

/// What a stream that is not made of length-prefixed frames looks like,
/// told from the four bytes where a frame header should be.
///
/// Only consulted for a header over the limit, so a frame that fits is never
/// mistaken for text: any header whose first byte is printable ASCII
/// declares at least 0x2020_2020 bytes (about 514 MiB).
///
/// ```
/// use enchufe::framing::Foreign;
/// assert_eq!(Foreign::sniff(*b"GET "), Some(Foreign::HttpRequest));
/// assert_eq!(Foreign::sniff(*b"SSH-"), Some(Foreign::Ssh));
/// assert_eq!(Foreign::sniff([0, 0, 0, 4]), None);
/// assert_eq!(Foreign::HttpResponse.to_string(), "an HTTP response");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Foreign {
    /// An HTTP/1 request line (`GET `, `POST`, `PUT `, `HEAD`, `DELE`,
    /// `OPTI`, `PATC`, `CONN`, `TRAC`): a browser or HTTP client at a frame
    /// server.
    HttpRequest,
    /// An HTTP/1 status line (`HTTP`): a frame client at an HTTP server.
    HttpResponse,
    /// An SSH banner (`SSH-`).
    Ssh,
    /// A TLS record: a handshake (`16 03 0x`), TLS spoken to an end without
    /// it; or an alert (`15 03 0x`), a TLS end refusing plain bytes.
    Tls,
    /// Printable ASCII of no protocol listed here: someone typing at the
    /// port with `nc` or `telnet`, or a text protocol we do not name.
    Text,
}

impl Foreign {
    /// What `header` looks like, or `None` if it could be a frame header.
    pub fn sniff(header: [u8; 4]) -> Option<Foreign> {
        const HTTP_METHODS: [&[u8; 4]; 9] = [
            b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC",
        ];
        if HTTP_METHODS.contains(&&header) {
            return Some(Foreign::HttpRequest);
        }
        match &header {
            b"HTTP" => Some(Foreign::HttpResponse),
            b"SSH-" => Some(Foreign::Ssh),
            // A handshake record (a TLS client's hello) or an alert record
            // (a TLS server refusing our plain bytes), major version 3,
            // minor 0 (SSL 3) to 4.
            [0x15 | 0x16, 0x03, 0..=4, _] => Some(Foreign::Tls),
            _ if header
                .iter()
                .all(|b| b.is_ascii_graphic() || b" \t\r\n".contains(b)) =>
            {
                Some(Foreign::Text)
            }
            _ => None,
        }
    }
}

impl Foreign {
    /// What to do about it, in a few words: the end of
    /// [`Error::NotFrames`]'s message.
    ///
    /// ```
    /// use enchufe::framing::Foreign;
    /// assert!(Foreign::Tls.advice().contains("both ends must use TLS"));
    /// ```
    pub fn advice(self) -> &'static str {
        match self {
            Foreign::HttpRequest => {
                "an HTTP client (a browser?) is at a port of frames; enchufe::http serves HTTP"
            }
            Foreign::HttpResponse => "that address serves HTTP, not frames: check the port",
            Foreign::Ssh => "that address is an SSH server: check the port",
            Foreign::Tls => {
                "the other end speaks TLS: both ends must use TLS (client::Config::tls, \
                 Server::tls) or neither"
            }
            Foreign::Text => {
                "frames begin with a 4-byte length, so a text tool (nc, telnet) cannot speak \
                 them: use a framed client"
            }
        }
    }
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Foreign::HttpRequest => "an HTTP request",
            Foreign::HttpResponse => "an HTTP response",
            Foreign::Ssh => "an SSH banner",
            Foreign::Tls => "TLS",
            Foreign::Text => "text",
        })
    }
}

/// Whether an I/O error means the connection is gone (reset, aborted,
/// broken pipe, EOF, not connected): what every crate's `is_closed()` asks
/// of an `io::Error`.
pub fn is_closed_io(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

/// Asserts a crate's table test of its error: `cases` holds pairs of an
/// error and the answers it must give to the predicates every enchufe error
/// type answers (timeout, closed, reset, frame too large, profile mismatch,
/// bad input), then to the crate's own (`assert_predicates!(&cases,
/// is_busy)`). Each crate's `error.rs` tests through it, so the set is
/// written once and every error type is asked the same questions. Not
/// covered by semver.
#[doc(hidden)]
#[macro_export]
macro_rules! assert_predicates {
    ($cases:expr $(, $own:ident)* $(,)?) => {
        for (e, expected) in $cases {
            let answers = [
                e.is_timeout(),
                e.is_closed(),
                e.is_reset(),
                e.is_frame_too_large(),
                e.is_profile_mismatch(),
                e.is_bad_input(),
                $(e.$own(),)*
            ];
            assert_eq!(answers, *expected, "{e:?}");
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_answer_without_knowing_the_variant() {
        let big = Error::FrameTooLarge {
            declared: 9,
            limit: 8,
        };
        assert!(big.is_frame_too_large() && !big.is_closed() && !big.is_timeout());
        let cut = Error::UnexpectedEof {
            expected: 8,
            received: 3,
        };
        assert!(cut.is_closed() && !cut.is_frame_too_large());
        assert!(Error::Io(io::ErrorKind::ConnectionReset.into()).is_closed());
        assert!(Error::Io(io::ErrorKind::TimedOut.into()).is_timeout());
        assert!(!Error::Malformed(Malformed::StreamUnread).is_closed());
        let http = Error::oversize_header(*b"HTTP", 8);
        assert!(http.is_not_frames() && http.is_frame_too_large() && http.is_fatal());
        assert!(!big.is_not_frames());
    }

    #[test]
    fn oversize_headers_are_named_only_when_they_look_like_a_protocol() {
        let limit = 8 << 20;
        let cases: [(&[u8; 4], Option<Foreign>); 9] = [
            (b"GET ", Some(Foreign::HttpRequest)),
            (b"POST", Some(Foreign::HttpRequest)),
            (b"HTTP", Some(Foreign::HttpResponse)),
            (b"SSH-", Some(Foreign::Ssh)),
            (&[0x16, 0x03, 0x01, 0x02], Some(Foreign::Tls)),
            (&[0x15, 0x03, 0x03, 0x00], Some(Foreign::Tls)),
            (b"hola", Some(Foreign::Text)),
            (&[0xff, 0x00, 0x00, 0x00], None),
            (&[0x7f, b'E', b'L', b'F'], None),
        ];
        for (header, want) in cases {
            match Error::oversize_header(*header, limit) {
                Error::NotFrames {
                    looks_like,
                    declared,
                    ..
                } => {
                    assert_eq!(Some(looks_like), want, "{header:?}");
                    assert_eq!(declared, u64::from(u32::from_be_bytes(*header)));
                }
                Error::FrameTooLarge { .. } => assert_eq!(want, None, "{header:?}"),
                other => panic!("{other}"),
            }
        }
        let text = Error::oversize_header(*b"GET ", limit).to_string();
        assert!(
            text.contains("not speaking length-prefixed frames")
                && text.contains("\"GET \"")
                && text.contains("an HTTP request")
                && text.contains("1195725856"),
            "{text}"
        );
    }
}
