//! [`Pump`]: a request body's bytes from the wire to the handler.

use enchufe_framing::OutFrame;
use tokio::io::{AsyncRead, AsyncWrite};

use super::role::{Cut, Driver, Event};
use crate::body::BodySender;

/// The connection's side of a request body while the handler runs: reads
/// body messages from the wire (only when the handler asked for the body
/// and its channel has room) and passes them on.
pub(super) struct Pump {
    /// `None` once the body ended, failed, or the handler dropped it.
    pub(super) tx: Option<BodySender>,
    /// `Expect: 100-continue` on HTTP/1.1: nothing is read before the
    /// handler asks, and then `100 Continue` goes first.
    pub(super) expect: bool,
    /// The body's end message was taken: the next request starts clean.
    pub(super) ended: bool,
    /// The body broke (its refusal's status): refuse and close.
    pub(super) failed: Option<u16>,
    /// The connection cannot go on after this reply (EOF, a stall).
    pub(super) cut: bool,
}

impl Pump {
    /// Whether to read body bytes now; writes `100 Continue` the first time
    /// an expecting handler asks.
    pub(super) fn read<Io>(&mut self, driver: &mut Driver<Io>) -> bool
    where
        Io: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(tx) = &self.tx else { return false };
        if !tx.wanted() && (self.expect || tx.tx.capacity() == 0) {
            return false;
        }
        if self.expect {
            self.expect = false;
            let _ = driver.write(&OutFrame::plain(bytes::Bytes::from_static(
                b"HTTP/1.1 100 Continue\r\n\r\n",
            )));
        }
        tx.tx.capacity() > 0
    }

    /// A body message from the wire: bytes, or (empty) the end.
    fn deliver(&mut self, message: bytes::BytesMut) {
        if message.is_empty() {
            self.ended = true;
        }
        if let Some(tx) = &self.tx {
            // Room was checked before reading; a handler that dropped its
            // body closed the channel: the rest is drained or the
            // connection closed after the reply.
            if tx.tx.try_send(Ok(message.freeze())).is_err() || self.ended {
                self.tx = None;
            }
        }
    }

    /// An event of the driver while the body may be read: body bytes are
    /// passed on (`true`: the handler has something to read), a read that
    /// failed, ended or stalled fails the body.
    pub(super) fn event(&mut self, event: Event) -> bool {
        match event {
            Event::Frame(message) => {
                self.deliver(message);
                return true;
            }
            Event::End(Cut::Read { error, refusal }) => {
                self.failed = refusal;
                self.fail(error);
            }
            Event::Eof => self.fail(enchufe_framing::Error::UnexpectedEof {
                expected: 0,
                received: 0,
            }),
            Event::End(Cut::Idle | Cut::Late) => self.fail(enchufe_framing::Error::Malformed(
                enchufe_framing::Malformed::HttpBodyStopped,
            )),
            _ => {}
        }
        false
    }

    /// The body cannot be read on: `error` to the handler.
    fn fail(&mut self, error: enchufe_framing::Error) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.tx.try_send(Err(error));
        }
        self.cut = true;
    }
}
