//! The plain loop: one request at a time, replies in request order.

use std::panic::AssertUnwindSafe;

use enchufe_framing::Decode;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::trace;

use crate::role::{Driver, Event};
use crate::{Connection, Disconnect, Handler};

use super::beside::run_beside;
use super::shared::{answer_eof, closed, settle, write_reply, Ctx};

/// The plain profile: one request at a time, replies in request order.
/// `first` is the first event, already read.
pub(super) async fn plain<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
    mut first: Option<Event>,
) -> Disconnect {
    loop {
        if driver.role().closing {
            return closed(conn);
        }
        if driver.role().stopping {
            return Disconnect::Shutdown;
        }
        // Only a check of `first` per frame: it is taken once, then `None`
        // is never written again.
        let event = match first {
            None => driver.event(true).await,
            Some(_) => first.take().expect("checked"),
        };
        let frame = match event {
            Event::Frame(frame) => {
                // The first frame is in: its deadline no longer applies.
                driver.hello_done();
                frame
            }
            Event::Stream(len) => {
                trace!(bytes = len, "streamed request");
                driver.hello_done();
                let limit = ctx.config.handler_timeout;
                let ran = crate::stream::handle(&*ctx.handler, conn, driver, len, limit).await;
                if let Err(reason) = settle(ran).and_then(|reply| write_reply(driver, reply)) {
                    return reason;
                }
                continue;
            }
            Event::Eof => return answer_eof(ctx, conn, driver).await,
            Event::End(reason) => return reason,
            _ => continue,
        };
        trace!(bytes = frame.len(), "request");
        let request = match H::Request::decode(frame) {
            Ok(request) => request,
            Err(e) => return Disconnect::Error(e.into()),
        };
        let call = AssertUnwindSafe(ctx.handler.handle(request, conn)).catch_unwind();
        let ran = run_beside::<true, _, _>(driver, call, ctx.config.handler_timeout).await;
        if let Err(reason) = settle(ran).and_then(|reply| write_reply(driver, reply)) {
            return reason;
        }
    }
}
