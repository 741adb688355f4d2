//! The multiplexed profile: enchufe to enchufe.
//!
//! Same 4-byte length framing as the plain profile; inside each frame, a
//! 9-byte header says what the frame is and which request it belongs to, so
//! many requests can be in flight on one connection, replies can come back
//! out of order, and pushes are told apart from replies. Before any of that,
//! each side sends one hello frame. `docs/PROTOCOL.md` is the full
//! specification with byte diagrams.
//!
//! ```text
//! hello:    [len][ 'E' 'N' 'C' 'H' | version | flags | id_len | node id ... ]
//! message:  [len][ kind | request id (u64 BE) | body ... ]
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Error, Malformed, Result};

/// First four bytes of every hello: "ENCH".
pub const MAGIC: [u8; 4] = *b"ENCH";

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;

/// Bytes of the header at the start of every multiplexed message frame.
pub const HEADER_LEN: usize = 9;

/// Longest node id a hello can carry.
pub const MAX_NODE_ID: usize = 255;

/// Hello flag bit: the sender is a peer. On a connection where both hellos
/// carry it, either side may send every kind (requests both ways) and
/// [`Kind::Ping`] keepalives.
pub const FLAG_PEER: u8 = 0x01;

/// Hello flag bit: the sender accepted the connection (a server, or the
/// peer that was dialed); its hello answers the dialer's. A dialer never
/// sets it, so a dialer that reads back a hello without it, byte for byte
/// its own, is talking to a plain echo server and says so
/// ([`Mismatch::Echoed`]) instead of taking its own hello for an answer.
pub const FLAG_ACCEPTOR: u8 = 0x02;

/// Whether a frame is a multiplexed hello of any version: the magic, a
/// version byte, a flags byte, and exactly the node id its length byte
/// announces. How a server in [`Profile::Auto`] tells a multiplexed client
/// from a plain one by its first frame, and how a plain end recognises a
/// multiplexed one; only ever asked of a connection's first frame.
///
/// A plain message is taken for a hello only if it is 7 to 262 bytes that
/// start with `ENCH`, then any version and flags bytes, then a length byte
/// that counts exactly the bytes left: nothing a person types, and nothing
/// the course's classes send.
///
/// ```
/// use enchufe::framing::mux::{is_hello, Hello};
/// assert!(is_hello(&Hello::new("a").encode().unwrap()));
/// assert!(!is_hello(b"ENCHANTED"));
/// assert!(!is_hello(b"hola"));
/// ```
pub fn is_hello(frame: &[u8]) -> bool {
    frame.len() >= 7 && frame[..4] == MAGIC && frame.len() == 7 + usize::from(frame[6])
}

/// What a multiplexed frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Client to server: a request awaiting a `Response` or `Error` with its id.
    Request = 1,
    /// Server to client: the successful reply to the request with this id.
    Response = 2,
    /// Server to client: the request with this id failed; the body says why.
    Error = 3,
    /// Client to server: a one-way message (id 0); nothing comes back.
    Notify = 4,
    /// Server to client: an unsolicited message (id 0).
    Push = 5,
    /// Client to server: stop working on the request with this id (no body).
    Cancel = 6,
    /// Keepalive (id 0, no body), only between two peers (both hellos carry
    /// [`FLAG_PEER`]): proof that the link is alive; the receiver ignores it.
    Ping = 7,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Error,
            4 => Kind::Notify,
            5 => Kind::Push,
            6 => Kind::Cancel,
            7 => Kind::Ping,
            _ => return None,
        })
    }
}

/// The header of a multiplexed message frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the frame is.
    pub kind: Kind,
    /// The request it belongs to (0 for `Notify` and `Push`).
    pub id: u64,
}

impl Header {
    /// The 9 header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.kind as u8;
        out[1..].copy_from_slice(&self.id.to_be_bytes());
        out
    }

    /// Splits a frame into its header and body (the body without copying).
    ///
    /// # Errors
    /// [`Error::Malformed`] for a frame shorter than the header or of an
    /// unknown kind.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use enchufe::framing::mux::{Header, Kind};
    /// let frame = BytesMut::from(&[1, 0, 0, 0, 0, 0, 0, 0, 7, b'h', b'i'][..]);
    /// let (header, body) = Header::split(frame).unwrap();
    /// assert_eq!(header, Header { kind: Kind::Request, id: 7 });
    /// assert_eq!(&body[..], b"hi");
    /// ```
    pub fn split(mut frame: BytesMut) -> Result<(Header, BytesMut)> {
        if frame.len() < HEADER_LEN {
            return Err(Error::Malformed(Malformed::Mux(Violation::Short)));
        }
        let kind = Kind::from_byte(frame[0])
            .ok_or(Error::Malformed(Malformed::Mux(Violation::UnknownKind)))?;
        frame.advance(1);
        let id = frame.get_u64();
        Ok((Header { kind, id }, frame))
    }
}

/// The first frame each side sends on a multiplexed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the sender.
    pub version: u8,
    /// Whether the sender is a peer ([`FLAG_PEER`]).
    pub peer: bool,
    /// Whether the sender accepted the connection ([`FLAG_ACCEPTOR`]).
    pub acceptor: bool,
    /// Who the sender is (peers use it; clients and servers may leave it
    /// empty). At most [`MAX_NODE_ID`] bytes of UTF-8.
    pub node_id: String,
}

impl Hello {
    /// A hello of this crate's version.
    pub fn new(node_id: impl Into<String>) -> Hello {
        Hello {
            version: VERSION,
            peer: false,
            acceptor: false,
            node_id: node_id.into(),
        }
    }

    /// A peer's hello: [`Hello::new`] with [`FLAG_PEER`] set.
    ///
    /// ```
    /// use enchufe::framing::mux::Hello;
    /// let hello = Hello::peer("a");
    /// assert_eq!(Hello::decode(&hello.encode().unwrap()).unwrap(), hello);
    /// ```
    pub fn peer(node_id: impl Into<String>) -> Hello {
        Hello {
            peer: true,
            ..Hello::new(node_id)
        }
    }

    /// This hello as the accepting side sends it: [`FLAG_ACCEPTOR`] set.
    ///
    /// ```
    /// use enchufe::framing::mux::Hello;
    /// let ours = Hello::new("").encode().unwrap();
    /// let answer = Hello::new("").answering().encode().unwrap();
    /// assert_ne!(ours, answer);
    /// assert!(Hello::decode(&answer).unwrap().acceptor);
    /// ```
    pub fn answering(self) -> Hello {
        Hello {
            acceptor: true,
            ..self
        }
    }

    /// The hello's frame payload.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the node id is longer than [`MAX_NODE_ID`].
    pub fn encode(&self) -> Result<Bytes> {
        let id = self.node_id.as_bytes();
        if id.len() > MAX_NODE_ID {
            return Err(Error::Malformed(Malformed::NodeIdTooLong));
        }
        let mut out = BytesMut::with_capacity(7 + id.len());
        out.put_slice(&MAGIC);
        out.put_u8(self.version);
        let mut flags = 0;
        if self.peer {
            flags |= FLAG_PEER;
        }
        if self.acceptor {
            flags |= FLAG_ACCEPTOR;
        }
        out.put_u8(flags);
        out.put_u8(id.len() as u8);
        out.put_slice(id);
        Ok(out.freeze())
    }

    /// Reads a hello and checks it is one of our version.
    ///
    /// # Errors
    /// [`Error::BadHello`] when the frame is not a hello (for example a plain
    /// client talking to a multiplexed server); [`Error::VersionMismatch`]
    /// when it is, of another version.
    pub fn decode(frame: &[u8]) -> Result<Hello> {
        if frame.len() < 7 || frame[..4] != MAGIC {
            return Err(Error::BadHello);
        }
        let version = frame[4];
        if version != VERSION {
            return Err(Error::VersionMismatch {
                ours: VERSION,
                theirs: version,
            });
        }
        let id_len = frame[6] as usize;
        let id = frame.get(7..7 + id_len).ok_or(Error::BadHello)?;
        let node_id = std::str::from_utf8(id).map_err(|_| Error::BadHello)?;
        Ok(Hello {
            version,
            // Unknown flag bits are ignored, as the spec says.
            peer: frame[5] & FLAG_PEER != 0,
            acceptor: frame[5] & FLAG_ACCEPTOR != 0,
            node_id: node_id.to_owned(),
        })
    }
}

/// Why a request failed, as carried in the first byte of an `Error` frame's
/// body (the rest is a UTF-8 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The handler returned an error.
    Handler,
    /// The handler panicked.
    Panic,
    /// Too many requests in flight on this connection; try again later.
    Busy,
    /// The request body did not decode as the handler's request type.
    BadRequest,
    /// The handler produced no reply for a request.
    NoReply,
    /// The server is shutting down and took no new work.
    ShuttingDown,
    /// The framework refused to send the handler's reply: it was over the
    /// server's `max_frame_length` (the message says by how much). The
    /// handler ran; raise the limit on both ends, or send less.
    ReplyTooLarge,
    /// The handler ran past the server's `handler_timeout` and was stopped.
    Timeout,
    /// A request reused the id of one still in flight on this connection:
    /// the second is refused with this, the first goes on and gets its own
    /// answer.
    DuplicateId,
    /// A code this version does not know.
    Other(u8),
}

impl ErrorCode {
    /// The code's byte.
    pub fn to_byte(self) -> u8 {
        match self {
            ErrorCode::Handler => 1,
            ErrorCode::Panic => 2,
            ErrorCode::Busy => 3,
            ErrorCode::BadRequest => 4,
            ErrorCode::NoReply => 5,
            ErrorCode::ShuttingDown => 6,
            ErrorCode::ReplyTooLarge => 7,
            ErrorCode::Timeout => 8,
            ErrorCode::DuplicateId => 9,
            ErrorCode::Other(b) => b,
        }
    }

    /// The code a byte stands for.
    pub fn from_byte(byte: u8) -> ErrorCode {
        match byte {
            1 => ErrorCode::Handler,
            2 => ErrorCode::Panic,
            3 => ErrorCode::Busy,
            4 => ErrorCode::BadRequest,
            5 => ErrorCode::NoReply,
            6 => ErrorCode::ShuttingDown,
            7 => ErrorCode::ReplyTooLarge,
            8 => ErrorCode::Timeout,
            9 => ErrorCode::DuplicateId,
            b => ErrorCode::Other(b),
        }
    }

    /// An `Error` frame's body: the code, then the message.
    pub fn body(self, message: &str) -> Bytes {
        let mut out = BytesMut::with_capacity(1 + message.len());
        out.put_u8(self.to_byte());
        out.put_slice(message.as_bytes());
        out.freeze()
    }

    /// Reads an `Error` frame's body. Invalid UTF-8 in the message is
    /// replaced, never an error: the error is what matters.
    pub fn parse(body: &[u8]) -> (ErrorCode, String) {
        match body.split_first() {
            Some((code, msg)) => (
                ErrorCode::from_byte(*code),
                String::from_utf8_lossy(msg).into_owned(),
            ),
            None => (ErrorCode::Other(0), String::new()),
        }
    }
}

/// Which protocol a connection speaks on top of the framing.
///
/// Between two enchufe ends the defaults agree and can never pair a push
/// with a request: clients (`Client`, `MultiClient`, `Peer`) speak
/// [`Profile::Multiplexed`], servers [`Profile::Auto`], which serves a
/// multiplexed client and a plain one (the course's Python classes, `nc`,
/// any length-prefix speaker) on the same port, told apart by the first
/// frame. [`Profile::Plain`] on a client is for servers that speak only the
/// course's protocol; on a server, for a port that must never speak
/// anything else.
///
/// Every mismatch is an error, never a wrong answer: a plain end that reads
/// a multiplexed hello, and a multiplexed end whose hello is not answered
/// by one, stop with [`Error::ProfileMismatch`]
/// saying which [`Mismatch`] and which setting to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Profile {
    /// One frame is one message, nothing added: the course's protocol.
    /// Replies in request order; a push looks like a reply, so a client
    /// must not have a request in flight when the server may push.
    Plain,
    /// A hello, then a 9-byte header (kind, request id) on every frame:
    /// many requests in flight, replies by id, pushes apart, errors carried.
    /// The clients' default.
    Multiplexed,
    /// The servers' default: the first frame decides. A multiplexed hello
    /// ([`is_hello`]) makes the connection multiplexed (the server answers
    /// with its own hello); any other frame makes it plain, and is its first
    /// request. The handler's `on_connect` runs once the profile is known.
    /// A plain client that waits for the server to speak first sends no
    /// frame: after the server's `detect_timeout` it is served as plain.
    /// On the dialing side (a client, or a server dialing out) it means
    /// [`Profile::Multiplexed`].
    #[default]
    Auto,
}

/// How a profile mismatch showed itself: the two ends of a connection speak
/// different [`Profile`]s. Each says what this end saw; the error's message
/// says which setting to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mismatch {
    /// This end speaks multiplexed; the other end's first frame is a
    /// message, not a hello: a plain server's greeting or its reply to our
    /// hello.
    NotAHello,
    /// This end speaks multiplexed; the other end sent our own hello back,
    /// byte for byte: a plain echo server.
    Echoed,
    /// This end speaks multiplexed; the other end closed the connection on
    /// reading our hello, as an enchufe server pinned to [`Profile::Plain`]
    /// does (or one that refused the connection).
    ClosedOnHello,
    /// This end speaks multiplexed; no hello arrived within this long: a
    /// plain server waiting for a request (or a server that has not served
    /// the connection: every slot taken).
    NoHello(std::time::Duration),
    /// This end speaks plain; the other end's first frame is a multiplexed
    /// hello.
    GotHello,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const PLAIN: &str = "the other end speaks the plain profile and this end the \
             multiplexed one: set `Profile::Plain` on this client (or let the server's \
             profile be `Profile::Auto`, its default)";
        match self {
            Mismatch::NotAHello => write!(f, "{PLAIN}; its first frame is a message, not a hello"),
            Mismatch::Echoed => write!(f, "{PLAIN}; it sent our hello back"),
            Mismatch::ClosedOnHello => write!(
                f,
                "{PLAIN}; it closed the connection on reading our hello (or refused it)"
            ),
            Mismatch::NoHello(after) => write!(
                f,
                "no hello within {after:?}: the server speaks the plain profile and this \
                 client the multiplexed one (set `Profile::Plain` here), or it has not \
                 served the connection yet (all its connection slots taken, or too slow)"
            ),
            Mismatch::GotHello => f.write_str(
                "the other end speaks the multiplexed profile (its first frame is a hello) \
                 and this end the plain one: leave `Profile` at its default on both ends \
                 (`Multiplexed` on a client, `Auto` on a server)",
            ),
        }
    }
}

/// How a multiplexed frame broke the protocol (the engine's `classify`). Each
/// is its own variant so that a role, a counter or a test matches on what
/// happened; [`Violation::as_str`] is the text a log shows. As an error it
/// is [`Error::Malformed`] with [`Malformed::Mux`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// Fewer bytes than the 9-byte header.
    Short,
    /// A kind byte this version does not know.
    UnknownKind,
    /// A server sent a request, a notify or a cancel to a client.
    ServerSentServerKind(Kind),
    /// A client sent a kind only a server may send (a response, an error,
    /// a push, a ping).
    ClientSentServerKind(Kind),
    /// A ping on a link that is not between two peers.
    PingOutsidePeers,
    /// A kind with no rule here (the kind list grew without one).
    NoRule,
}

impl Violation {
    /// A short description of it, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::Short => "frame shorter than the 9-byte header",
            Violation::UnknownKind => "unknown frame kind",
            Violation::ServerSentServerKind(Kind::Request) => "the server sent a request frame",
            Violation::ServerSentServerKind(Kind::Notify) => "the server sent a notify frame",
            Violation::ServerSentServerKind(_) => "the server sent a cancel frame",
            Violation::ClientSentServerKind(_) => "a client sent a server-only kind",
            Violation::PingOutsidePeers => "a ping on a link that is not between peers",
            Violation::NoRule => "a frame of a kind this version has no rule for",
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Violation {}
