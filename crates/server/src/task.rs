//! The life of one connection: a reader loop that hands requests to the
//! handler, and a writer task that sends replies and pushes in batches.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use enchufe_framing::mux::{ErrorCode, Header, Hello, Kind, Profile};
use enchufe_framing::{Decode, Encode, FrameReader, FrameWriter, OutFrame};
use futures::future::{AbortHandle, Abortable};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::outbox::Outbox;
use crate::{BusyPolicy, Config, Connection, Disconnect, Error, Handler};

/// What a connection task needs from its server.
pub(crate) struct Ctx<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) config: Config,
    pub(crate) framing: enchufe_framing::Config,
    /// Stop reading new requests: graceful shutdown has begun.
    pub(crate) shutdown: CancellationToken,
    /// Drop in-flight handlers: the shutdown grace period is over.
    pub(crate) abort: CancellationToken,
}

/// Reads requests until the connection ends; returns why it ended.
/// The caller has spawned [`write_loop`] for the same connection.
pub(crate) async fn read_loop<H: Handler>(
    ctx: &Ctx<H>,
    conn: &Connection,
    read: OwnedReadHalf,
    ready: &mut Option<tokio::sync::oneshot::Sender<crate::Result<Connection>>>,
) -> Disconnect {
    let mut reader = FrameReader::new(read, &ctx.framing);
    if ctx.config.profile == Profile::Multiplexed {
        if let Err(reason) = handshake(ctx, conn, &mut reader).await {
            return reason;
        }
    }
    if let Err(panic) = AssertUnwindSafe(ctx.handler.on_connect(conn))
        .catch_unwind()
        .await
    {
        return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic)));
    }
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(conn.clone()));
    }
    match ctx.config.profile {
        Profile::Multiplexed => multiplexed(ctx, conn, &mut reader).await,
        _ => plain(ctx, conn, &mut reader).await,
    }
}

/// Sends our hello (first in the queue, before any push) and checks theirs.
async fn handshake<H: Handler>(
    ctx: &Ctx<H>,
    conn: &Connection,
    reader: &mut FrameReader<OwnedReadHalf>,
) -> Result<(), Disconnect> {
    let hello = if ctx.config.peer {
        Hello::peer(ctx.config.node_id.clone())
    } else {
        Hello::new(ctx.config.node_id.clone())
    };
    let hello = hello.encode().map_err(|e| Disconnect::Error(e.into()))?;
    conn.enqueue(OutFrame::plain(hello))
        .await
        .map_err(Disconnect::Error)?;
    let theirs = tokio::select! {
        theirs = tokio::time::timeout(ctx.config.handshake_timeout, reader.recv()) => theirs,
        () = ctx.shutdown.cancelled() => return Err(Disconnect::Shutdown),
    };
    match theirs {
        Err(_) => Err(Disconnect::IdleTimeout),
        Ok(Ok(None)) => Err(Disconnect::PeerClosed),
        Ok(Err(e)) => Err(Disconnect::Error(e.into())),
        Ok(Ok(Some(frame))) => match Hello::decode(&frame) {
            Ok(hello) => {
                debug!(node = %hello.node_id, peer = hello.peer, "hello");
                conn.set_remote(hello);
                Ok(())
            }
            Err(e) => Err(Disconnect::Error(e.into())),
        },
    }
}

/// The plain profile: one request at a time, replies in request order.
async fn plain<H: Handler>(
    ctx: &Ctx<H>,
    conn: &Connection,
    reader: &mut FrameReader<OwnedReadHalf>,
) -> Disconnect {
    loop {
        let next = tokio::select! {
            () = ctx.shutdown.cancelled() => return Disconnect::Shutdown,
            () = conn.closing().cancelled() => return closed(conn),
            next = recv_until(reader, ctx.config.idle_timeout.map(|limit| tokio::time::Instant::now() + limit)) => next,
        };
        let frame = match next {
            Some(Ok(Some(frame))) => frame,
            Some(Ok(None)) => return Disconnect::PeerClosed,
            Some(Err(e)) => return Disconnect::Error(e.into()),
            None => return Disconnect::IdleTimeout,
        };
        trace!(bytes = frame.len(), "request");
        let request = match H::Request::decode(frame) {
            Ok(request) => request,
            Err(e) => return Disconnect::Error(e.into()),
        };
        let handled = tokio::select! {
            handled = AssertUnwindSafe(ctx.handler.handle(request, conn)).catch_unwind() => handled,
            () = ctx.abort.cancelled() => return Disconnect::Shutdown,
        };
        let reply = match handled {
            Ok(Ok(Some(reply))) => reply,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => return Disconnect::Error(Error::Handler(e.to_string())),
            Err(panic) => return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic))),
        };
        // A reply that cannot be queued ends the connection: the plain wire
        // has no other way to say so.
        let queued = match reply.encode() {
            Ok(body) => match conn.check_len(OutFrame::plain(body)) {
                Ok(frame) => conn.enqueue(frame).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        if let Err(e) = queued {
            return Disconnect::Error(e);
        }
    }
}

/// How one multiplexed handler call ended.
enum Outcome<R, E> {
    Done(Result<Option<R>, E>),
    Panicked(String),
    Cancelled,
}

/// The multiplexed profile: handlers run concurrently on this task (up to
/// `max_in_flight`), each reply carries its request's id, a cancel frame
/// drops its handler's future, and errors and panics become error replies.
async fn multiplexed<H: Handler>(
    ctx: &Ctx<H>,
    conn: &Connection,
    reader: &mut FrameReader<OwnedReadHalf>,
) -> Disconnect {
    let max_in_flight = ctx.config.max_in_flight;
    let mut running = FuturesUnordered::new();
    // Request id -> abort handle, for cancel frames. Notifies are not here.
    let mut cancels: HashMap<u64, AbortHandle> = HashMap::new();
    let mut stopping = false;
    let mut draining = false;
    let mut last_activity = tokio::time::Instant::now();
    // Between two peers either end may send every kind, and pings keep the
    // link provably alive.
    let peer = conn.is_peer();
    let mut keepalive = ctx.config.keepalive.filter(|_| peer).map(|every| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });

    loop {
        if stopping && running.is_empty() {
            return Disconnect::Shutdown;
        }
        let full = running.len() >= max_in_flight && ctx.config.busy == BusyPolicy::Wait;
        let can_read = !stopping && !full;
        // Idle time only counts while nothing runs: a slow handler is not idleness.
        // A deadline, not a timeout: a keepalive tick must not restart it.
        let idle = if running.is_empty() {
            ctx.config.idle_timeout.map(|limit| last_activity + limit)
        } else {
            None
        };
        tokio::select! {
            biased;
            () = ctx.abort.cancelled() => return Disconnect::Shutdown,
            () = conn.closing().cancelled(), if !draining => {
                if !conn.is_draining() {
                    return closed(conn);
                }
                // Retired: read on until the other end closes too.
                draining = true;
            }
            Some((id, outcome)) = running.next(), if !running.is_empty() => {
                last_activity = tokio::time::Instant::now();
                if let Some(id) = id {
                    cancels.remove(&id);
                }
                match finish::<H>(conn, id, outcome).await {
                    Ok(()) => {}
                    // A reply has nowhere to go once we stopped sending.
                    Err(Error::Closed) if draining => {}
                    Err(e) => return Disconnect::Error(e),
                }
            }
            () = ctx.shutdown.cancelled(), if !stopping => stopping = true,
            () = tick(&mut keepalive) => conn.send_control(OutFrame::with_header(
                Header { kind: Kind::Ping, id: 0 },
                bytes::Bytes::new(),
            )),
            next = recv_until(reader, idle), if can_read => {
                last_activity = tokio::time::Instant::now();
                let frame = match next {
                    Some(Ok(Some(frame))) => frame,
                    Some(Ok(None)) if draining => return Disconnect::Closed,
                    Some(Ok(None)) => {
                        // The client is done sending; answer what it asked first.
                        stopping = true;
                        if running.is_empty() {
                            return Disconnect::PeerClosed;
                        }
                        continue;
                    }
                    Some(Err(e)) => return Disconnect::Error(e.into()),
                    None => return Disconnect::IdleTimeout,
                };
                let (header, body) = match Header::split(frame) {
                    Ok(parts) => parts,
                    Err(e) => return Disconnect::Error(e.into()),
                };
                let id = match header.kind {
                    Kind::Request => Some(header.id),
                    Kind::Notify => None,
                    // From a peer, a push is a one-way message like a notify.
                    Kind::Push if peer => None,
                    Kind::Response if peer => {
                        conn.answer(header.id, Ok(body));
                        continue;
                    }
                    Kind::Error if peer => {
                        let (code, message) = ErrorCode::parse(&body);
                        conn.answer(header.id, Err(Error::Remote { code, message }));
                        continue;
                    }
                    Kind::Ping if peer => continue,
                    Kind::Cancel => {
                        if let Some(handle) = cancels.remove(&header.id) {
                            trace!(id = header.id, "cancelled");
                            handle.abort();
                        }
                        continue;
                    }
                    _ => {
                        return Disconnect::Error(
                            enchufe_framing::Error::Malformed("a client sent a server-only kind").into(),
                        )
                    }
                };
                if let Some(id) = id {
                    if cancels.contains_key(&id) {
                        return Disconnect::Error(
                            enchufe_framing::Error::Malformed("request id already in flight").into(),
                        );
                    }
                    if running.len() >= max_in_flight {
                        // Only reachable with BusyPolicy::Refuse.
                        let busy = error_frame(id, ErrorCode::Busy, "too many requests in flight");
                        if let Err(e) = conn.enqueue(busy).await {
                            return Disconnect::Error(e);
                        }
                        continue;
                    }
                }
                let request = match H::Request::decode(body) {
                    Ok(request) => request,
                    Err(e) => {
                        if let Some(id) = id {
                            let bad = error_frame(id, ErrorCode::BadRequest, &e.to_string());
                            if let Err(e) = conn.enqueue(bad).await {
                                return Disconnect::Error(e);
                            }
                        } else {
                            debug!(error = %e, "notify did not decode; dropped");
                        }
                        continue;
                    }
                };
                let (handle, registration) = AbortHandle::new_pair();
                if let Some(id) = id {
                    cancels.insert(id, handle);
                }
                let handler = &ctx.handler;
                running.push(async move {
                    let call = AssertUnwindSafe(handler.handle(request, conn)).catch_unwind();
                    let outcome = match Abortable::new(call, registration).await {
                        Ok(Ok(done)) => Outcome::Done(done),
                        Ok(Err(panic)) => Outcome::Panicked(panic_message(&*panic)),
                        Err(_aborted) => Outcome::Cancelled,
                    };
                    (id, outcome)
                });
            }
        }
    }
}

/// Queues the reply (or error reply) of a finished multiplexed handler.
async fn finish<H: Handler>(
    conn: &Connection,
    id: Option<u64>,
    outcome: Outcome<H::Response, H::Error>,
) -> crate::Result<()> {
    let Some(id) = id else {
        // A notify: nothing goes back; failures are only logged.
        match outcome {
            Outcome::Done(Err(e)) => debug!(error = %e, "notify handler failed"),
            Outcome::Panicked(msg) => warn!(panic = %msg, "notify handler panicked"),
            _ => {}
        }
        return Ok(());
    };
    let frame = match outcome {
        Outcome::Done(Ok(Some(reply))) => match reply.encode() {
            Ok(body) => {
                let frame = OutFrame::with_header(
                    Header {
                        kind: Kind::Response,
                        id,
                    },
                    body,
                );
                match conn.check_len(frame) {
                    Ok(frame) => frame,
                    Err(e) => error_frame(id, ErrorCode::Handler, &e.to_string()),
                }
            }
            Err(e) => error_frame(id, ErrorCode::Handler, &e.to_string()),
        },
        Outcome::Done(Ok(None)) => error_frame(id, ErrorCode::NoReply, "the handler sent no reply"),
        Outcome::Done(Err(e)) => error_frame(id, ErrorCode::Handler, &e.to_string()),
        Outcome::Panicked(msg) => {
            warn!(id, panic = %msg, "handler panicked; answered with an error");
            error_frame(id, ErrorCode::Panic, &msg)
        }
        Outcome::Cancelled => return Ok(()),
    };
    conn.enqueue(frame).await
}

fn error_frame(id: u64, code: ErrorCode, message: &str) -> OutFrame {
    OutFrame::with_header(
        Header {
            kind: Kind::Error,
            id,
        },
        code.body(message),
    )
}

fn closed(conn: &Connection) -> Disconnect {
    conn.take_failure()
        .map_or(Disconnect::Closed, Disconnect::Error)
}

/// The next keepalive tick; never, without keepalive.
async fn tick(keepalive: &mut Option<tokio::time::Interval>) {
    match keepalive {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The next frame, or `None` if the deadline passed first.
async fn recv_until(
    reader: &mut FrameReader<OwnedReadHalf>,
    deadline: Option<tokio::time::Instant>,
) -> Option<enchufe_framing::Result<Option<BytesMut>>> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, reader.recv()).await.ok(),
        None => Some(reader.recv().await),
    }
}

/// Sends queued frames in batches until the connection closes, then sends
/// what is left and half-closes, all within the write timeout.
pub(crate) async fn write_loop(
    conn: Connection,
    outbox: Arc<Outbox>,
    write: OwnedWriteHalf,
    framing: enchufe_framing::Config,
    write_timeout: Duration,
    abort: CancellationToken,
) {
    let mut writer = FrameWriter::new(write, &framing);
    let result = tokio::select! {
        result = pump(&conn, &outbox, &mut writer, write_timeout) => result,
        () = abort.cancelled() => Ok(()),
    };
    if let Err(e) = result {
        debug!(error = %e, "write failed");
        match e {
            Error::WriteStalled(after) => conn.slow(after),
            e => conn.fail(e),
        }
        outbox.close();
        return;
    }
    if abort.is_cancelled() {
        return;
    }
    // Goodbye: whatever was queued before the close still goes out.
    outbox.close();
    let goodbye = async {
        while let Some(frame) = outbox.try_recv() {
            writer.feed(frame).await?;
        }
        writer.close().await
    };
    match tokio::time::timeout(write_timeout, goodbye).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "goodbye write failed"),
        Err(_) => warn!(
            ?write_timeout,
            "goodbye write stalled; dropping the connection"
        ),
    }
}

async fn pump(
    conn: &Connection,
    outbox: &Outbox,
    writer: &mut FrameWriter<OwnedWriteHalf>,
    write_timeout: Duration,
) -> crate::Result<()> {
    loop {
        let first = tokio::select! {
            biased;
            frame = outbox.recv() => match frame {
                Some(frame) => frame,
                None => return Ok(()),
            },
            () = conn.closing().cancelled() => return Ok(()),
        };
        let batch = writer.send_batch(first, || outbox.try_recv());
        match tokio::time::timeout(write_timeout, batch).await {
            Ok(Ok(n)) => trace!(frames = n, "flushed"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(Error::WriteStalled(write_timeout)),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
