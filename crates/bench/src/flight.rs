//! The window of the pipelined generators (frames, multiplexed frames,
//! HTTP, WebSocket and TLS): the writer takes a place per frame it sends
//! and tells the reader the frame is owed; the reader gives the place back
//! for each echo it checks.

use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, Semaphore};

use crate::error::{Error, Result};

/// Takes a place for one more frame. When none is free, flushes `sink`
/// first: only frames that left can be echoed and free a place.
pub(crate) async fn take<S, I>(window: &Semaphore, sink: &mut S) -> Result<()>
where
    S: Sink<I> + Unpin,
    Error: From<S::Error>,
{
    let permit = match window.try_acquire() {
        Ok(permit) => permit,
        Err(_) => {
            SinkExt::<I>::flush(sink).await?;
            window
                .acquire()
                .await
                .map_err(|_| Error::harness("window closed"))?
        }
    };
    permit.forget();
    Ok(())
}

/// Tells the reader one more echo is owed, with what it needs to check it.
pub(crate) async fn owe<N>(sent: &mpsc::Sender<N>, note: N) -> Result<()> {
    sent.send(note)
        .await
        .map_err(|_| Error::harness("reader gone"))
}

/// The connection ended after `received` echoes, with the one awaited and
/// those still in `sent` owed.
pub(crate) fn closed<N>(conn: usize, received: u64, sent: &mpsc::Receiver<N>) -> Error {
    Error::Closed {
        conn,
        received,
        owed: 1 + sent.len() as u64,
    }
}

/// The next echo, or [`closed`] when the connection ended first.
pub(crate) async fn next_echo<S, T, E, N>(
    echoes: &mut S,
    conn: usize,
    received: u64,
    sent: &mpsc::Receiver<N>,
) -> Result<T>
where
    S: Stream<Item = std::result::Result<T, E>> + Unpin,
    Error: From<E>,
{
    match echoes.next().await {
        Some(echo) => Ok(echo?),
        None => Err(closed(conn, received, sent)),
    }
}
