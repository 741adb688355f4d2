//! What the loops share: what a connection task needs from its server, and
//! how a handler's call comes to a reply, an error frame or a reason to end.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use enchufe_framing::mux::{ErrorCode, Header, Kind};
use enchufe_framing::{Encode, OutFrame};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::beside::run_beside;
use crate::role::{Driver, Serving};
use crate::{Config, Connection, Disconnect, Error, Handler, Unsupported};

/// What a connection task needs from its server.
pub(crate) struct Ctx<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) config: Config,
    pub(crate) framing: enchufe_framing::Config,
    /// What large frames still arriving may hold, all connections together
    /// ([`Config::max_total_partial_bytes`]).
    pub(crate) memory: enchufe_framing::MemoryBudget,
}

/// The client finished sending: [`Handler::on_eof`] may answer before the
/// goodbye (plain: as a reply; multiplexed: as a push).
pub(super) async fn answer_eof<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
) -> Disconnect {
    let call = AssertUnwindSafe(ctx.handler.on_eof(conn)).catch_unwind();
    let answer = match run_beside::<false, _, _>(driver, call, None).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(panic)) => return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic))),
        Err(reason) => return reason,
    };
    let Some(answer) = answer else {
        return Disconnect::PeerClosed;
    };
    let written = answer
        .encode()
        .map_err(Error::from)
        .and_then(|body| conn.push_frame(body))
        .and_then(|frame| driver.send(&frame));
    match written {
        Ok(()) | Err(Error::Closed) => Disconnect::PeerClosed,
        Err(e) => Disconnect::Error(e),
    }
}

#[inline]
/// What a plain handler's call came to: its reply (if any), or the reason
/// the connection ends (its error or panic, or the connection's own end).
pub(super) fn settle<R, E: std::fmt::Display + Send + 'static>(
    ran: Result<std::thread::Result<Result<Option<R>, E>>, Disconnect>,
) -> Result<Option<R>, Disconnect> {
    match ran? {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(Disconnect::Error(Error::Handler(crate::HandlerError::new(
            e,
        )))),
        Err(panic) => Err(Disconnect::Error(Error::HandlerPanic(panic_message(
            &*panic,
        )))),
    }
}

#[inline]
/// Writes a plain reply, if there is one. One that cannot be written ends
/// the connection: the plain wire has no other way to say so.
pub(super) fn write_reply<R: Encode, Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
    reply: Option<R>,
) -> Result<(), Disconnect> {
    let Some(reply) = reply else {
        return Ok(());
    };
    let written = match reply.encode() {
        Ok(body) => driver.send(&OutFrame::plain(body)),
        Err(e) => Err(e.into()),
    };
    match written {
        // The write side already failed: the loop finds out why.
        Ok(()) | Err(Error::Closed) => Ok(()),
        Err(e) => Err(Disconnect::Error(e)),
    }
}

/// How one multiplexed handler call ended.
pub(super) enum Outcome<R, E> {
    Done(Result<Option<R>, E>),
    Panicked(String),
    TimedOut(std::time::Duration),
    Cancelled,
}

pub(super) fn error_frame(id: u64, code: ErrorCode, message: &str) -> OutFrame {
    OutFrame::with_header(
        Header {
            kind: Kind::Error,
            id,
        },
        code.body(message),
    )
}

/// A stream where none can be (a multiplexed connection never turns them
/// on): the connection cannot go on.
pub(super) fn not_streamed() -> Disconnect {
    Disconnect::Error(Error::Unsupported(Unsupported::StreamHere))
}

pub(super) fn closed(conn: &Connection) -> Disconnect {
    conn.take_failure()
        .map_or(Disconnect::Closed, Disconnect::Error)
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
