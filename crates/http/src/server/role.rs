//! HTTP's [`Role`] on the engine's driver: the driver's failures as one
//! [`Cut`].

use std::sync::Arc;

use enchufe_engine::driver;
use enchufe_engine::role::{Failure, Output, Role};
use enchufe_engine::Signal;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{Refusal, RequestHead};

/// One HTTP connection's driver: the engine's, with HTTP's role.
pub(super) type Driver<Io> = driver::Driver<Io, Arc<Signal>, RequestHead, HttpRole>;

/// The signal bit raised when the server shuts down (the driver's own
/// `QUEUED` is bit 0): the connection reads no further request, and the
/// reply in hand says `Connection: close`.
pub(super) const STOP: u8 = 2;

/// What HTTP's loops get from the driver.
pub(super) type Event = driver::Event<Cut>;

/// HTTP's [`Role`]: every event as it is, but the driver's failures as one
/// [`Cut`] (what the codec refused is read here, once).
#[derive(Debug)]
pub(super) struct HttpRole;

/// Why an HTTP connection, or the request body it reads, cannot go on.
#[derive(Debug)]
pub(super) enum Cut {
    /// Reading failed; with the status its codec refused the head or body
    /// with, if it did.
    Read {
        error: enchufe_framing::Error,
        refusal: Option<u16>,
    },
    /// A head began and did not end in time, or no first request came:
    /// `408`. (A body: it stopped arriving.)
    Late,
    /// No request for the idle timeout. (A body: it stopped arriving.)
    Idle,
    /// The output failed or stalled: nothing more can be sent.
    Output,
}

impl<Io> Role<Io, RequestHead> for HttpRole
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    type End = Cut;

    fn on_failure(
        &mut self,
        failure: Failure,
        out: &mut Output<'_, Io, RequestHead>,
    ) -> Option<Event> {
        Some(Event::End(match failure {
            Failure::ReadFailed(error) => Cut::Read {
                refusal: out.wire().split().refusal().map(Refusal::status),
                error,
            },
            Failure::FrameTimeout(_) | Failure::HelloTimeout(_) => Cut::Late,
            Failure::IdleTimeout => Cut::Idle,
            Failure::WriteFailed(_) | Failure::Stalled(_) => Cut::Output,
        }))
    }
}
