//! A streamed request's body on its way out: its header, its chunks as
//! they come (the output's budget permitting), and the word to its sender.

use std::sync::Arc;
use std::task::{Context, Poll};

use enchufe_framing::Malformed;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Driver, Stop, STREAM_OUTPUT};
use crate::link::shared::flag;
use crate::link::stream::StreamOut;
use crate::{Error, Result};

impl<Io: AsyncRead + AsyncWrite + Unpin + 'static> Driver<Io> {
    /// Writes a streamed frame's header; its chunks follow as they come
    /// ([`Driver::pump_stream`]).
    pub(super) fn start_stream(&mut self, stream: StreamOut) {
        if self.core.is_write_done() {
            let _ = stream.done.send(Err(Error::Closed));
            return;
        }
        if let Err(e) = self.core.wire_mut().write_stream_header(stream.len) {
            let _ = stream.done.send(Err(e.into()));
            return;
        }
        let len = stream.len;
        self.sending = Some((stream, len));
        if len == 0 {
            self.end_stream(Ok(()));
        }
    }

    /// Moves a streamed frame's chunks into the output while it holds less
    /// than [`STREAM_OUTPUT`]. A body cut short or too long cannot be
    /// finished: the connection ends (the other end counts bytes).
    pub(super) fn pump_stream(&mut self, cx: &mut Context<'_>) -> std::result::Result<(), Stop> {
        while let Some((stream, left)) = self.sending.as_mut() {
            if self.core.queued() >= STREAM_OUTPUT {
                return Ok(());
            }
            let failure = match stream.chunks.poll_recv(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(Ok(chunk))) if chunk.len() as u64 <= *left => {
                    *left -= chunk.len() as u64;
                    self.core.write_chunk(&chunk);
                    if *left == 0 {
                        self.end_stream(Ok(()));
                    }
                    continue;
                }
                Poll::Ready(Some(Ok(_))) => {
                    enchufe_framing::Error::Malformed(Malformed::StreamTooLong)
                }
                Poll::Ready(Some(Err(e))) => enchufe_framing::Error::Io(e),
                Poll::Ready(None) => enchufe_framing::Error::Malformed(Malformed::StreamTooShort),
            };
            let failure = Arc::new(failure);
            self.end_stream(Err(Error::Framing(failure.clone())));
            return Err(Stop::Failed(Arc::try_unwrap(failure).unwrap_or_else(|f| {
                enchufe_framing::Error::Io(std::io::Error::other(f.to_string()))
            })));
        }
        Ok(())
    }

    /// The streamed frame is all queued (or failed): tell its sender, and
    /// let the queue move again.
    pub(super) fn end_stream(&mut self, result: Result<()>) {
        if let Some((stream, _)) = self.sending.take() {
            let _ = stream.done.send(result);
        }
        if !self.queue_is_drained() {
            self.shared.signal.raise(flag::QUEUED);
        }
    }
}
