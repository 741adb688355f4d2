//! What an inbound multiplexed frame means for a given role.

use bytes::BytesMut;

use enchufe_framing::mux::{ErrorCode, Header, Kind, Violation};

/// Which end of a multiplexed connection we are: it decides which kinds the
/// other end may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent requests; the other end is a server.
    Client,
    /// We answer requests; the other end is a client.
    Server,
    /// Both hellos carried the peer flag: either end sends every kind.
    Peer,
}

/// One inbound frame, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A request to answer, with its id.
    Request {
        /// The request id.
        id: u64,
        /// The request's body.
        body: BytesMut,
    },
    /// A one-way message to handle; nothing goes back. (From a peer, a push
    /// is one too.)
    Notify(BytesMut),
    /// Stop working on the request with this id.
    Cancel(u64),
    /// The outcome of our request `id`: its body, or the error the other end
    /// sent ([`ErrorCode`] and message).
    Reply {
        /// Our request's id.
        id: u64,
        /// Its body, or the other end's error.
        outcome: Result<BytesMut, (ErrorCode, String)>,
    },
    /// An unsolicited message from a server (client role).
    Push(BytesMut),
    /// A peer's keepalive: proof of life, nothing to do.
    Ping,
}

/// Classifies a multiplexed frame (the payload after the 4-byte length) for
/// `role`.
///
/// # Errors
/// The protocol [`Violation`]: a frame shorter than the header, an unknown
/// kind, or a kind the other end may not send to us.
///
/// ```
/// use bytes::BytesMut;
/// use enchufe_engine::session::{classify, Inbound, Role, Violation};
/// use enchufe::framing::mux::Kind;
/// let cancel = BytesMut::from(&[6, 0, 0, 0, 0, 0, 0, 0, 9][..]);
/// assert_eq!(classify(cancel.clone(), Role::Server), Ok(Inbound::Cancel(9)));
/// assert_eq!(
///     classify(cancel, Role::Client),
///     Err(Violation::ServerSentServerKind(Kind::Cancel))
/// );
/// ```
pub fn classify(frame: BytesMut, role: Role) -> Result<Inbound, Violation> {
    if frame.len() < enchufe_framing::mux::HEADER_LEN {
        return Err(Violation::Short);
    }
    // Long enough: the only error left is the kind byte.
    let (header, body) = Header::split(frame).map_err(|_| Violation::UnknownKind)?;
    let asks = matches!(role, Role::Server | Role::Peer);
    let answers = matches!(role, Role::Client | Role::Peer);
    Ok(match header.kind {
        Kind::Request if asks => Inbound::Request {
            id: header.id,
            body,
        },
        Kind::Notify if asks => Inbound::Notify(body),
        Kind::Cancel if asks => Inbound::Cancel(header.id),
        Kind::Push if role == Role::Peer => Inbound::Notify(body),
        // The spec gives pushes id 0 but names no violation for another id;
        // the id answers nothing either way, so it is ignored.
        Kind::Push if role == Role::Client => Inbound::Push(body),
        Kind::Response if answers => Inbound::Reply {
            id: header.id,
            outcome: Ok(body),
        },
        Kind::Error if answers => Inbound::Reply {
            id: header.id,
            outcome: Err(ErrorCode::parse(&body)),
        },
        Kind::Ping if role == Role::Peer => Inbound::Ping,
        kind @ (Kind::Request | Kind::Notify | Kind::Cancel) => {
            return Err(Violation::ServerSentServerKind(kind))
        }
        Kind::Ping if role == Role::Client => return Err(Violation::PingOutsidePeers),
        // Only a server is left to reach here: it got a server-only kind.
        kind @ (Kind::Response | Kind::Error | Kind::Push | Kind::Ping) => {
            return Err(Violation::ClientSentServerKind(kind))
        }
        // `Kind` is non-exhaustive, and `Header::split` refuses bytes of no
        // known kind: a kind added to the wire without a rule here is
        // refused rather than guessed at.
        _ => return Err(Violation::NoRule),
    })
}
