//! A request whose body ends in a file region, on plain TCP (Linux): its
//! length and head go out through the wire, then the region goes from the
//! file's pages into the socket with `sendfile`, before any other frame.
//!
//! ```text
//!  [len = head + region][head] --wire, flushed--> socket
//!  region ------------------------sendfile------> socket   (then the queue moves again)
//! ```

use std::any::{Any, TypeId};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Driver, Stop};
use crate::link::shared::{flag, FileOut};
use crate::region::{FileBytes, Sending};
use crate::Error;

/// Whether the link's I/O is a plain `TcpStream`, the one transport whose
/// socket `sendfile` writes to directly (a TLS or WebSocket stream over
/// TCP is not: its bytes are transformed first). A comparison of type ids,
/// known when the link is made, so no transport needs a bound or a method
/// for it.
pub(in crate::link) fn is_tcp<Io: 'static>() -> bool {
    TypeId::of::<Io>() == TypeId::of::<TcpStream>()
}

impl<Io: AsyncRead + AsyncWrite + Unpin + 'static> Driver<Io> {
    /// Writes a file frame's length and head; its region follows
    /// ([`Driver::pump_file`]). A region the file no longer holds is
    /// refused before anything is written: the request fails, the
    /// connection goes on.
    pub(super) fn start_file(&mut self, file: FileOut) -> Result<(), (Error, Option<u64>)> {
        if let Err(e) = file.region.check() {
            return Err((Error::FileRegion(e), file.id));
        }
        if self.core.is_write_done() {
            // The write side failed; the connection's end answers it.
            return Ok(());
        }
        let len = file.head.len() as u64 + file.region.len() as u64;
        if let Err(e) = self.core.wire_mut().write_stream_header(len) {
            return Err((e.into(), file.id));
        }
        self.core.write_chunk(&file.head);
        if !file.region.is_empty() {
            self.filing = Some(Sending::new(file.region));
        }
        Ok(())
    }

    /// Sends the region being sent once everything before it is flushed,
    /// as far as the socket takes it now. A file that ends before the
    /// region does cannot finish its frame (the other end counts bytes):
    /// the connection ends with that error.
    pub(super) fn pump_file(&mut self, cx: &mut Context<'_>) -> Result<(), Stop> {
        while let Some(sending) = self.filing.as_mut() {
            // The length and head, and any frame before them, leave first
            // (the core flushes them and wakes the driver).
            if self.core.queued() > 0 || self.core.is_write_done() {
                return Ok(());
            }
            let io: &dyn Any = self.core.wire().get_ref();
            let Some(stream) = io.downcast_ref::<TcpStream>() else {
                // `exchange_file` queues file frames on plain TCP only.
                let e = std::io::Error::other("a file region on a transport without sendfile");
                return Err(Stop::Failed(enchufe_framing::Error::Io(e)));
            };
            match sending.poll_send(stream, cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    let e = sending.ended_early();
                    return Err(Stop::Failed(enchufe_framing::Error::Io(e)));
                }
                Poll::Ready(Ok(n)) => {
                    FileBytes::add(&self.shared.file_bytes.zero_copy, n as u64);
                    if sending.left() == 0 {
                        self.filing = None;
                        if !self.queue_is_drained() {
                            self.shared.signal.raise(flag::QUEUED);
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Err(Stop::Failed(enchufe_framing::Error::Io(e))),
            }
        }
        Ok(())
    }
}
