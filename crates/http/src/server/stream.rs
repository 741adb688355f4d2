//! A streamed reply, written within the output budget while the request
//! body's pump runs.

use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};

use super::config::Config;
use super::pump::Pump;
use super::role::{Cut, Driver, Event};
use crate::message::Streamed;

/// How a streamed reply failed.
pub(super) enum Streaming {
    /// Before its head was written: a `500` can still be sent.
    BeforeHead,
    /// After: the connection closes, the client sees the reply cut short.
    Cut,
}

/// Writes a streamed reply: the head once the first chunk (or the end)
/// arrives, so that a `100 Continue` its reading of the request body
/// causes goes first; then each chunk (framed when `chunked`), only while
/// the output holds less than [`Config::output_budget`]. The request body's
/// pump runs meanwhile, so a reply may stream the request back.
pub(super) async fn send_stream<Io>(
    driver: &mut Driver<Io>,
    mut pump: Option<&mut Pump>,
    head: bytes::Bytes,
    streamed: Streamed,
    chunked: bool,
    config: &Config,
) -> Result<(), Streaming>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let Streamed { len, mut chunks } = streamed;
    let mut head = Some(head);
    let mut sent: u64 = 0;
    let result = std::future::poll_fn(|cx| loop {
        let room = driver.queued() < config.output_budget;
        if room {
            match chunks.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(head) = head.take() {
                        driver.write_chunk(&head);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    sent += chunk.len() as u64;
                    if len.is_some_and(|len| sent > len) {
                        tracing::warn!(?len, "streamed reply longer than its length");
                        return Poll::Ready(Err(Streaming::Cut));
                    }
                    if chunked {
                        let size = format!("{:x}\r\n", chunk.len());
                        driver.write_chunk(&bytes::Bytes::from(size));
                        driver.write_chunk(&chunk);
                        driver.write_chunk(&bytes::Bytes::from_static(b"\r\n"));
                    } else {
                        driver.write_chunk(&chunk);
                    }
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "streamed reply failed");
                    return Poll::Ready(Err(match head {
                        Some(_) => Streaming::BeforeHead,
                        None => Streaming::Cut,
                    }));
                }
                Poll::Ready(None) => {
                    if let Some(head) = head.take() {
                        driver.write_chunk(&head);
                    }
                    if len.is_some_and(|len| sent != len) {
                        tracing::warn!(?len, sent, "streamed reply shorter than its length");
                        return Poll::Ready(Err(Streaming::Cut));
                    }
                    if chunked {
                        driver.write_chunk(&bytes::Bytes::from_static(b"0\r\n\r\n"));
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {}
            }
        }
        let read = pump.as_deref_mut().is_some_and(|p| p.read(driver));
        driver.set_busy(!read);
        match driver.poll_event(cx, read) {
            Poll::Ready(Event::End(Cut::Output)) => return Poll::Ready(Err(Streaming::Cut)),
            Poll::Ready(event) => {
                if let Some(pump) = pump.as_deref_mut() {
                    pump.event(event);
                }
            }
            // Room again after a flush: the stream is polled once more.
            Poll::Pending if !room && driver.queued() < config.output_budget => {}
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    driver.set_busy(false);
    result
}
