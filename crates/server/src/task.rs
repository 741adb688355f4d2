//! The life of one connection: a reader loop that hands requests to the
//! handler, and a writer task that sends replies and pushes in batches.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enchufe_framing::{Decode, Encode, FrameReader, FrameWriter};
use futures::FutureExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use crate::{Connection, Disconnect, Error, Handler};

/// What a connection task needs from its server.
pub(crate) struct Ctx<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) framing: enchufe_framing::Config,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Duration,
    /// Stop reading new requests: graceful shutdown has begun.
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
    /// Drop in-flight handlers: the shutdown grace period is over.
    pub(crate) abort: tokio_util::sync::CancellationToken,
}

/// Reads requests until the connection ends; returns why it ended.
/// The caller has spawned [`write_loop`] for the same connection.
pub(crate) async fn read_loop<H: Handler>(
    ctx: &Ctx<H>,
    conn: &Connection,
    read: OwnedReadHalf,
) -> Disconnect {
    let mut reader = FrameReader::new(read, &ctx.framing);

    if let Err(panic) = AssertUnwindSafe(ctx.handler.on_connect(conn))
        .catch_unwind()
        .await
    {
        return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic)));
    }

    loop {
        let next = tokio::select! {
            () = ctx.shutdown.cancelled() => return Disconnect::Shutdown,
            () = conn.closing().cancelled() => {
                return conn.take_failure().map_or(Disconnect::Closed, Disconnect::Error);
            }
            next = recv_within(&mut reader, ctx.idle_timeout) => next,
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
        let sent = match reply.encode() {
            Ok(frame) => send_reply(conn, frame).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = sent {
            return Disconnect::Error(e);
        }
    }
}

/// Queues a reply: unlike a push, a reply that cannot be queued ends the
/// connection, because the plain profile has no other way to say so.
async fn send_reply(conn: &Connection, frame: Bytes) -> crate::Result<()> {
    let frame = conn.frame(frame)?;
    conn.enqueue(frame).await
}

/// The next frame, or `None` if the idle timeout passed first.
async fn recv_within(
    reader: &mut FrameReader<OwnedReadHalf>,
    idle: Option<Duration>,
) -> Option<enchufe_framing::Result<Option<bytes::BytesMut>>> {
    match idle {
        Some(limit) => tokio::time::timeout(limit, reader.recv()).await.ok(),
        None => Some(reader.recv().await),
    }
}

/// Sends queued frames in batches until the connection closes, then sends
/// what is left and half-closes, all within the write timeout.
pub(crate) async fn write_loop(
    conn: Connection,
    mut queue: mpsc::Receiver<Bytes>,
    write: OwnedWriteHalf,
    ctx_framing: enchufe_framing::Config,
    write_timeout: Duration,
    abort: tokio_util::sync::CancellationToken,
) {
    let mut writer = FrameWriter::new(write, &ctx_framing);
    let result = tokio::select! {
        result = pump(&conn, &mut queue, &mut writer, write_timeout) => result,
        () = abort.cancelled() => Ok(()),
    };
    if let Err(e) = result {
        debug!(error = %e, "write failed");
        conn.fail(e);
        return;
    }
    if abort.is_cancelled() {
        return;
    }
    // Goodbye: whatever was queued before the close still goes out.
    queue.close();
    let goodbye = async {
        while let Some(frame) = queue.recv().await {
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
    queue: &mut mpsc::Receiver<Bytes>,
    writer: &mut FrameWriter<OwnedWriteHalf>,
    write_timeout: Duration,
) -> crate::Result<()> {
    loop {
        let first = tokio::select! {
            biased;
            frame = queue.recv() => match frame {
                Some(frame) => frame,
                None => return Ok(()),
            },
            () = conn.closing().cancelled() => return Ok(()),
        };
        match tokio::time::timeout(
            write_timeout,
            writer.send_batch(first, || queue.try_recv().ok()),
        )
        .await
        {
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
