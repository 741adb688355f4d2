//! [`WsIo`] as a byte stream: `AsyncRead` hands out messages as frames,
//! `AsyncWrite` sends frames as messages.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::code;
use super::frame::{put_header, Refusal, DIRECT, WRITE_BUDGET};
use super::stream::{Step, WsIo};

impl<Io> AsyncRead for WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// Hands out every whole message already read, each as a frame, as far
    /// as `buf` has room; reads the socket only when none is left.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.hand_out(buf) {
                break;
            }
            if let Some(refusal) = this.refused {
                if buf.filled().len() > start {
                    break;
                }
                return Poll::Ready(Err(refusal.error()));
            }
            if this.peer_closed.is_some() {
                break; // EOF once what came before the close is handed out
            }
            if this.idle() {
                match this.decode() {
                    Ok(Step::Again) => continue,
                    Ok(Step::NeedMore | Step::Blocked) => {}
                    Err(refusal) => {
                        let e = this.refuse(refusal);
                        if matches!(refusal, Refusal::TooBig(_)) {
                            continue; // the oversize header goes to the driver
                        }
                        if buf.filled().len() > start {
                            break; // the messages before it first; then `refused`
                        }
                        return Poll::Ready(Err(e));
                    }
                }
            }
            // Nothing more is decoded without new bytes (or the pong owed
            // going out): hand out this batch first.
            if buf.filled().len() > start {
                break;
            }
            if this.read_closed {
                if !this.rbuf.is_empty() || this.partial.is_some() || !this.idle() {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                // The TCP connection ended without a close frame, between
                // messages: as a TCP EOF between frames, a clean end.
                break;
            }
            if this.pong.is_some() {
                // A pong is owed: it takes its place in the output before
                // anything more is read; while the output is full (the
                // peer does not read), reading waits.
                this.queue_pong();
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
                if this.pong.is_some() {
                    return this.before_waiting(cx);
                }
                continue; // decode what waited behind the ping
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return this.before_waiting(cx),
            }
        }
        // Pongs owed go out with the replies to this batch (the driver
        // flushes after it), or, if it has none, when the next read waits.
        this.queue_pong();
        Poll::Ready(Ok(()))
    }
}

impl<Io> AsyncWrite for WsIo<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    /// Encodes whole frames of `buf` as binary messages into the output,
    /// without writing to the socket unless the output holds
    /// 64 KiB: the batch leaves at [`poll_flush`](Self::poll_flush).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.out.len() >= WRITE_BUDGET {
            ready!(this.poll_send(cx))?;
        }
        let mut used = 0;
        while used < buf.len() && this.out.len() < WRITE_BUDGET {
            if this.wleft >= DIRECT && buf.len() - used >= DIRECT {
                // A large body goes from the driver's buffer to the socket
                // without a copy, behind what `out` holds, in one write.
                let body = &buf[used..used + this.wleft.min(buf.len() - used)];
                let slices = [io::IoSlice::new(&this.out), io::IoSlice::new(body)];
                let n = match Pin::new(&mut this.io).poll_write_vectored(cx, &slices) {
                    Poll::Ready(Ok(0)) if used == 0 => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) if n > 0 => n,
                    Poll::Ready(Err(e)) if used == 0 => return Poll::Ready(Err(e)),
                    Poll::Pending if used == 0 => return Poll::Pending,
                    _ => break, // what was taken so far is reported
                };
                let from_out = n.min(this.out.len());
                this.out.advance(from_out);
                this.wleft -= n - from_out;
                used += n - from_out;
                continue;
            }
            if this.wleft > 0 {
                let n = this
                    .wleft
                    .min(buf.len() - used)
                    .min(WRITE_BUDGET - this.out.len());
                this.out.extend_from_slice(&buf[used..used + n]);
                this.wleft -= n;
                used += n;
                continue;
            }
            if this.whead_at == 0 {
                // Between frames: a pong owed goes here.
                this.queue_pong();
            }
            let n = (4 - this.whead_at).min(buf.len() - used);
            this.whead[this.whead_at..this.whead_at + n].copy_from_slice(&buf[used..used + n]);
            this.whead_at += n;
            used += n;
            if this.whead_at == 4 {
                this.whead_at = 0;
                this.wleft = u32::from_be_bytes(this.whead) as usize;
                put_header(&mut this.out, 0x2, this.wleft);
            }
        }
        Poll::Ready(Ok(used))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_pong();
        if let Some(refusal) = this.refused {
            this.queue_close(Some(refusal.code()), refusal.reason());
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends a close frame (the peer's code echoed after its close; 1008
    /// while the peer's message is unfinished, as when the server's
    /// deadline for it passed; else 1001 going away), then shuts the
    /// socket's writing side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match (this.refused, this.peer_closed) {
            (Some(refusal), _) => this.queue_close(Some(refusal.code()), refusal.reason()),
            (None, Some(echo)) => this.queue_close(echo, ""),
            (None, None) if this.started => {
                this.queue_close(Some(code::POLICY), "message not completed")
            }
            (None, None) => this.queue_close(Some(code::GOING_AWAY), "going away"),
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
