//! The pipelined generator of the WebSocket and TLS loads: the frame
//! generator's batching (feed while the window allows, flush only before
//! waiting) over any sink of payloads and stream of echoes.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream};
use tokio::sync::{mpsc, Semaphore};

use crate::error::{Error, Result};
use crate::flight;
use crate::payload::{check, Payloads};

/// Keeps `depth` payloads in flight on one connection until `stop`, then
/// drains; returns the echoes checked. Writer and reader run concurrently
/// (a writer blocked on a full socket must not stop echoes being read).
pub(crate) async fn run<W, R>(
    conn: usize,
    mut sink: W,
    mut echoes: R,
    payloads: Payloads,
    depth: usize,
    stop: &AtomicBool,
) -> Result<u64>
where
    W: Sink<Bytes, Error = Error> + Unpin,
    R: Stream<Item = Result<Bytes>> + Unpin,
{
    let window = Semaphore::new(depth);
    let (sent_tx, mut sent_rx) = mpsc::channel::<()>(depth.max(1));
    let writer = async {
        let mut n = 0u64;
        while !stop.load(Relaxed) {
            flight::take(&window, &mut sink).await?;
            flight::owe(&sent_tx, ()).await?;
            sink.feed(payloads.get(n).clone()).await?;
            n += 1;
        }
        sink.flush().await?;
        drop(sent_tx);
        Ok::<_, Error>(sink)
    };
    let reader = async {
        let mut received = 0u64;
        while sent_rx.recv().await.is_some() {
            let echo = flight::next_echo(&mut echoes, conn, received, &sent_rx).await?;
            check(conn, received, &echo, payloads.get(received))?;
            window.add_permits(1);
            received += 1;
        }
        Ok(received)
    };
    let (_sink, received) = tokio::try_join!(writer, reader)?;
    Ok(received)
}
