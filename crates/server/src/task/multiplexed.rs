//! The multiplexed loop: handlers run concurrently on the connection's
//! task, replies carry their request's id.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use bytes::BytesMut;
use enchufe_engine::session::{self, Admit, Flow, Inbound, Role};
use enchufe_framing::mux::{self, ErrorCode, Header, Kind};
use enchufe_framing::{Decode, Encode, Malformed, OutFrame};
use futures::future::{AbortHandle, Abortable};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, trace, warn};

use crate::role::{Driver, Event, Serving};
use crate::{BusyPolicy, Connection, Disconnect, Error, Handler};

use super::beside::within;
use super::shared::{answer_eof, closed, error_frame, not_streamed, panic_message, Ctx, Outcome};

/// The multiplexed profile: handlers run concurrently on this task (up to
/// `max_in_flight`, one-way messages included), each reply carries its
/// request's id, a cancel frame drops its handler's future (or a parked
/// request), errors and panics become error replies, and at shutdown every
/// request read and not run is answered `shutting down`.
pub(super) async fn multiplexed<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
) -> Disconnect {
    let busy = match ctx.config.busy {
        BusyPolicy::Refuse => session::Busy::Refuse,
        _ => session::Busy::Wait,
    };
    let mut mux = Mux {
        ctx,
        conn,
        flow: Flow::new(ctx.config.max_in_flight, busy),
        running: FuturesUnordered::new(),
        cancels: HashMap::new(),
        role: if conn.is_peer() {
            Role::Peer
        } else {
            Role::Server
        },
    };
    let mut draining = false;
    let mut stopped = false;

    loop {
        if driver.role().stopping && !stopped {
            // Shutdown: nothing new runs; what waited is answered now, and
            // every request read from here on (reading goes on while
            // handlers finish) is answered `shutting down`.
            stopped = true;
            for (id, _) in mux.flow.stop() {
                refuse_shutting_down(driver, id);
            }
        }
        while let Some((id, body)) = mux.flow.next_parked() {
            mux.start(driver, id, body, None);
        }
        if mux.flow.is_idle() {
            if driver.is_eof() {
                return if draining {
                    Disconnect::Closed
                } else {
                    answer_eof(ctx, conn, driver).await
                };
            }
            if driver.role().stopping {
                // Requests that arrived by now are answered, not left unread.
                while let Some(next) = driver.read_now() {
                    match next {
                        Ok(Some(frame)) => {
                            if let Err(reason) = mux.inbound(driver, frame, None) {
                                return reason;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Disconnect::Error(e.into()),
                    }
                }
                return Disconnect::Shutdown;
            }
        }
        if driver.role().closing && !draining {
            if !conn.is_draining() {
                return closed(conn);
            }
            // Retired: what is queued goes out, then read on until the other
            // end closes too.
            draining = true;
            crate::role::goodbye(driver).await;
        }
        if driver.is_eof() {
            // Half-closed with requests in flight: answered if the client
            // is still there, dropped if it is gone.
            driver.watch_gone();
        }
        let event = std::future::poll_fn(|cx| mux.poll(driver, cx)).await;
        match event {
            Event::Stream(_) => return not_streamed(),
            Event::End(reason) => {
                if driver.role().aborted {
                    // The grace period is over: the requests still running
                    // are dropped with `mux`, unanswered.
                    driver
                        .role()
                        .count(|c| &c.shutdown_cancelled, mux.cancels.len() as u64);
                }
                return reason;
            }
            // A frame, the client done sending (answer what it asked
            // first), a signal: look at the state.
            _ => {}
        }
    }
}

/// Most frames one poll of the multiplexed loop takes before it yields to
/// the runtime: a client that pipelines without pause cannot hold a worker
/// thread (tokio's budget would stop it too, later).
pub(super) const FRAMES_PER_POLL: usize = 256;

/// The multiplexed loop's state.
pub(super) struct Mux<'a, H: Handler> {
    ctx: &'a Ctx<H>,
    conn: &'a Connection,
    flow: Flow<BytesMut>,
    /// Handlers that did not finish on their first poll.
    running: FuturesUnordered<Running<'a, H>>,
    /// Request id -> abort handle, for cancel frames.
    cancels: HashMap<u64, AbortHandle>,
    role: Role,
}

impl<'a, H: Handler> Mux<'a, H> {
    /// Finishes what finished, takes every frame that has arrived (up to
    /// [`FRAMES_PER_POLL`]), and returns when the loop must look at the
    /// driver's state.
    fn poll<Io: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        driver: &mut Driver<'_, Io>,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        for _ in 0..FRAMES_PER_POLL {
            let mut finished = false;
            while let Poll::Ready(Some((id, outcome))) = self.running.poll_next_unpin(cx) {
                if let Some(id) = id {
                    self.cancels.remove(&id);
                    if !matches!(outcome, Outcome::Cancelled) && driver.role().is_stopping() {
                        driver.role().count(|c| &c.shutdown_answered, 1);
                    }
                }
                self.flow.finished(id);
                finished = true;
                finish::<H, Io>(driver, id, outcome);
            }
            if finished && (self.flow.parked() > 0 || self.flow.is_idle()) {
                return Poll::Ready(Event::Signal(0));
            }
            driver.set_busy(!self.flow.is_idle());
            let read = !driver.is_eof() && (driver.role().stopping || self.flow.can_read());
            match driver.poll_event(cx, read) {
                Poll::Ready(Event::Frame(frame)) => {
                    if let Err(reason) = self.inbound(driver, frame, Some(cx)) {
                        return Poll::Ready(Event::End(reason));
                    }
                    if self.flow.is_idle() && (driver.is_eof() || driver.role().stopping) {
                        return Poll::Ready(Event::Signal(0));
                    }
                }
                other => return other,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Acts on one inbound frame.
    fn inbound<Io: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        driver: &mut Driver<'_, Io>,
        frame: BytesMut,
        cx: Option<&mut Context<'_>>,
    ) -> Result<(), Disconnect> {
        let malformed = |v: session::Violation| {
            Disconnect::Error(enchufe_framing::Error::Malformed(Malformed::Mux(v)).into())
        };
        let (id, body) = match session::classify(frame, self.role).map_err(malformed)? {
            Inbound::Request { id, body } => (Some(id), body),
            Inbound::Notify(body) => (None, body),
            Inbound::Cancel(id) => {
                if self.flow.cancel_parked(id).is_some() {
                    trace!(id, "cancelled before it ran");
                } else if let Some(handle) = self.cancels.remove(&id) {
                    trace!(id, "cancelled");
                    handle.abort();
                }
                return Ok(());
            }
            Inbound::Reply { id, outcome } => {
                let outcome = outcome.map_err(|(code, message)| Error::Remote { code, message });
                self.conn.answer(id, outcome);
                return Ok(());
            }
            Inbound::Ping | Inbound::Push(_) => return Ok(()),
        };
        let (admit, body) = self.flow.admit(id, body);
        match (admit, id, body) {
            (Admit::Run, id, Some(body)) => self.start(driver, id, body, cx),
            (Admit::Park, ..) => {}
            (Admit::Busy, Some(id), _) => {
                let _ = driver.send(&error_frame(
                    id,
                    ErrorCode::Busy,
                    "too many requests in flight",
                ));
            }
            (Admit::ShuttingDown, id, _) => refuse_shutting_down(driver, id),
            // A client's bug, not a reason to drop the request already
            // running under that id: it goes on and gets its own answer.
            (Admit::Duplicate, Some(id), _) => {
                debug!(id, "duplicate request id; refused");
                let _ = driver.send(&error_frame(
                    id,
                    ErrorCode::DuplicateId,
                    "a request with this id is already in flight",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Decodes a request and runs its handler. With a context, the handler
    /// is polled once right here: one that is ready at once (most are) is
    /// answered with no task node, abort handle or wakeup. One that is not
    /// joins `running`, abortable by a cancel. An undecodable request is
    /// answered `bad request` (a one-way message is dropped).
    fn start<Io: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        driver: &mut Driver<'_, Io>,
        id: Option<u64>,
        body: BytesMut,
        cx: Option<&mut Context<'_>>,
    ) {
        let request = match H::Request::decode(body) {
            Ok(request) => request,
            Err(e) => {
                match id {
                    Some(id) => {
                        let _ =
                            driver.send(&error_frame(id, ErrorCode::BadRequest, &e.to_string()));
                    }
                    None => debug!(error = %e, "notify did not decode; dropped"),
                }
                // It never ran: give its place back at once.
                self.flow.finished(id);
                return;
            }
        };
        let (handler, conn) = (&self.ctx.handler, self.conn);
        let limit = self.ctx.config.handler_timeout;
        let mut call: Call<'a, H> = Box::pin(async move {
            let run = async move {
                match id {
                    Some(_) => {
                        AssertUnwindSafe(handler.handle(request, conn))
                            .catch_unwind()
                            .await
                    }
                    None => AssertUnwindSafe(handler.handle_notify(request, conn))
                        .catch_unwind()
                        .await
                        .map(|done| done.map(|()| None)),
                }
            };
            let done = match limit {
                None => Ok(run.await),
                Some(limit) => within(limit, run).await.map_err(|_| limit),
            };
            match done {
                Ok(Ok(done)) => Outcome::Done(done),
                Ok(Err(panic)) => Outcome::Panicked(panic_message(&*panic)),
                Err(limit) => Outcome::TimedOut(limit),
            }
        });
        if let Some(cx) = cx {
            if let Poll::Ready(outcome) = call.as_mut().poll(cx) {
                self.flow.finished(id);
                finish::<H, Io>(driver, id, outcome);
                return;
            }
        }
        let (handle, registration) = AbortHandle::new_pair();
        if let Some(id) = id {
            self.cancels.insert(id, handle);
        }
        self.running.push(Box::pin(async move {
            match Abortable::new(call, registration).await {
                Ok(outcome) => (id, outcome),
                Err(_aborted) => (id, Outcome::Cancelled),
            }
        }));
    }
}

pub(super) fn refuse_shutting_down<Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
    id: Option<u64>,
) {
    match id {
        Some(id) => {
            driver.role().count(|c| &c.shutdown_refused, 1);
            let _ = driver.send(&error_frame(
                id,
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        None => debug!("one-way message dropped: shutting down"),
    }
}

/// One multiplexed handler call, boxed so it can move into `running` after
/// its first poll.
pub(super) type Call<'a, H> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Outcome<<H as Handler>::Response, <H as Handler>::Error>>
            + Send
            + 'a,
    >,
>;

/// A running multiplexed handler: its request id and how it ended.
pub(super) type Running<'a, H> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Option<u64>,
                    Outcome<<H as Handler>::Response, <H as Handler>::Error>,
                ),
            > + Send
            + 'a,
    >,
>;

/// Writes the reply (or error reply) of a finished multiplexed handler.
pub(super) fn finish<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
    id: Option<u64>,
    outcome: Outcome<H::Response, H::Error>,
) {
    let Some(id) = id else {
        // A notify: nothing goes back; failures are only logged.
        match outcome {
            Outcome::Done(Err(e)) => debug!(error = %e, "notify handler failed"),
            Outcome::Panicked(msg) => warn!(panic = %msg, "notify handler panicked"),
            Outcome::TimedOut(limit) => debug!(?limit, "notify handler timed out"),
            _ => {}
        }
        return;
    };
    let frame = match outcome {
        Outcome::Done(Ok(Some(reply))) => match reply.encode() {
            Ok(body) => OutFrame::with_header(
                Header {
                    kind: Kind::Response,
                    id,
                },
                body,
            ),
            Err(e) => error_frame(
                id,
                ErrorCode::Handler,
                &format!("the handler's reply could not be encoded: {e}"),
            ),
        },
        Outcome::Done(Ok(None)) => error_frame(id, ErrorCode::NoReply, "the handler sent no reply"),
        Outcome::Done(Err(e)) => error_frame(id, H::error_code(&e), &e.to_string()),
        Outcome::Panicked(msg) => {
            warn!(id, panic = %msg, "handler panicked; answered with an error");
            error_frame(id, ErrorCode::Panic, &msg)
        }
        Outcome::TimedOut(limit) => error_frame(
            id,
            ErrorCode::Timeout,
            &Error::HandlerTimeout(limit).to_string(),
        ),
        Outcome::Cancelled => return,
    };
    match driver.send(&frame) {
        Ok(()) | Err(Error::Closed) => {}
        // Over the frame limit: the request still gets exactly one answer,
        // which says the framework refused the reply (the handler ran).
        // Its message is cut to fit the limit it reports.
        Err(e) => {
            let room = driver
                .max_frame_length()
                .saturating_sub(mux::HEADER_LEN + 1);
            let message = e.to_string();
            let mut cut = message.len().min(room);
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            let refusal = error_frame(id, ErrorCode::ReplyTooLarge, &message[..cut]);
            let _ = driver.send(&refusal);
        }
    }
}
