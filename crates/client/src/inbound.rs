//! What a frame from a multiplexed server means to the client: protocol
//! logic with no socket in it, so every case is tested on bytes alone.

use bytes::BytesMut;
use enchufe_framing::mux::{ErrorCode, Header, Kind};

use crate::{Error, Result};

/// One frame from the server, classified.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// The outcome of the request with this id: its reply's body, or
    /// [`Error::Remote`] for an error frame.
    Reply { id: u64, outcome: Result<BytesMut> },
    /// An unsolicited message's body.
    Push(BytesMut),
}

impl Inbound {
    /// Classifies a frame (the payload after the 4-byte length).
    ///
    /// # Errors
    /// The protocol violation, for [`Error::Protocol`]: a frame shorter than
    /// the header, of an unknown kind, or of a kind only a client may send.
    pub(crate) fn parse(frame: BytesMut) -> Result<Inbound, &'static str> {
        let (header, body) = Header::split(frame).map_err(|e| match e {
            enchufe_framing::Error::Malformed(what) => what,
            _ => "malformed frame",
        })?;
        match header.kind {
            Kind::Response => Ok(Inbound::Reply {
                id: header.id,
                outcome: Ok(body),
            }),
            Kind::Error => {
                let (code, message) = ErrorCode::parse(&body);
                Ok(Inbound::Reply {
                    id: header.id,
                    outcome: Err(Error::Remote { code, message }),
                })
            }
            // The spec gives pushes id 0 but names no violation for another
            // id; the id answers nothing either way, so it is ignored.
            Kind::Push => Ok(Inbound::Push(body)),
            Kind::Request => Err("the server sent a request frame"),
            Kind::Notify => Err("the server sent a notify frame"),
            Kind::Cancel => Err("the server sent a cancel frame"),
            // `Kind` is non-exhaustive: a kind added later that this version
            // does not handle is as unknown as a byte `Header::split` refused.
            _ => Err("unknown frame kind"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, id: u64, body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        out.extend_from_slice(&[kind]);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_response_is_the_reply_to_its_id() {
        match Inbound::parse(frame(2, 7, b"pong")) {
            Ok(Inbound::Reply { id: 7, outcome }) => assert_eq!(&outcome.unwrap()[..], b"pong"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_error_frame_fails_its_request_with_code_and_message() {
        match Inbound::parse(frame(3, 9, b"\x01boom")) {
            Ok(Inbound::Reply {
                id: 9,
                outcome:
                    Err(Error::Remote {
                        code: ErrorCode::Handler,
                        message,
                    }),
            }) => assert_eq!(message, "boom"),
            other => panic!("{other:?}"),
        }
        match Inbound::parse(frame(3, 1, b"\xc8")) {
            Ok(Inbound::Reply {
                outcome:
                    Err(Error::Remote {
                        code: ErrorCode::Other(200),
                        ..
                    }),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_push_is_told_apart_from_replies() {
        match Inbound::parse(frame(5, 0, b"news")) {
            Ok(Inbound::Push(body)) => assert_eq!(&body[..], b"news"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn violations_are_named() {
        assert_eq!(
            Inbound::parse(BytesMut::from(&[2u8, 0, 0][..])).unwrap_err(),
            "frame shorter than the 9-byte header"
        );
        assert_eq!(
            Inbound::parse(frame(9, 1, b"")).unwrap_err(),
            "unknown frame kind"
        );
        assert_eq!(
            Inbound::parse(frame(0, 1, b"")).unwrap_err(),
            "unknown frame kind"
        );
        for kind in [1, 4, 6] {
            assert!(Inbound::parse(frame(kind, 1, b"")).is_err(), "kind {kind}");
        }
    }
}
