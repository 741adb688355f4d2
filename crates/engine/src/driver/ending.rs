//! The driver's goodbye: the output's last flush and shutdown, bounded by
//! the write timeout, and the frames already arrived read without waiting.

use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use enchufe_framing::{Result, Split};

use super::Driver;

impl<Io: AsyncRead + AsyncWrite + Unpin, S, C: Split, R> Driver<Io, S, C, R> {
    /// Flushes and shuts the writing side down, within the write timeout
    /// (if any). The output is done afterwards, whatever happened.
    ///
    /// # Errors
    /// The write's error, or an `io::ErrorKind::TimedOut` one when the
    /// write timeout passed first.
    pub async fn finish_writing(&mut self) -> Result<()> {
        self.last_write(true).await
    }

    /// Flushes what is queued, within the write timeout (if any), without
    /// shutting the writing side down: the last words before a connection
    /// is reset. The output is done afterwards, whatever happened.
    ///
    /// # Errors
    /// As [`Driver::finish_writing`].
    pub async fn flush_last(&mut self) -> Result<()> {
        self.last_write(false).await
    }

    /// The output's last write: a flush, then a shutdown of the writing
    /// side if `shutdown`, within the write timeout.
    async fn last_write(&mut self, shutdown: bool) -> Result<()> {
        if self.write_done {
            return Ok(());
        }
        let limit = self.timer.write_timeout();
        let wire = &mut self.wire;
        let write = async {
            if shutdown {
                wire.shutdown().await
            } else {
                wire.flush().await
            }
        };
        let result = match limit {
            Some(limit) => tokio::time::timeout(limit, write)
                .await
                .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into())),
            None => write.await,
        };
        self.write_done = true;
        result
    }

    /// Flushes what is queued and shuts the writing side down, without
    /// waiting: `Pending` until done. The output is done once it is ready.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.write_done {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(self.wire.poll_shutdown(cx));
        self.write_done = true;
        Poll::Ready(result)
    }

    /// Reads a frame that has already arrived, without waiting: `None` when
    /// there is none yet (at shutdown, requests sent before it are answered
    /// rather than left unread).
    pub fn read_now(&mut self) -> Option<Result<Option<BytesMut>>> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match self.wire.poll_frame(&mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }
}
