//! The stream of unsolicited messages, [`Client::pushes`].

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use enchufe_framing::Decode;
use futures::Stream;
use tokio_util::sync::ReusableBoxFuture;

use crate::{Client, Error, Result};

/// The unsolicited messages of a [`Client`], decoded as `M`: what
/// [`Client::pushes`] returns. `Unpin`, so `StreamExt::next` works on it as
/// it is, and `Send` whatever `M` is (a message is decoded where it is
/// polled).
///
/// Each item is what [`Client::recv`] would return; the stream ends where
/// `recv` returns `Ok(None)`. It holds a handle to the connection, so it
/// keeps the connection open while it lives. Dropping it between items
/// loses nothing (the wait for the next message is cancel-safe).
pub struct Pushes<M> {
    client: Client,
    /// The wait for the next frame; one allocation for the stream's life.
    next: ReusableBoxFuture<'static, Option<Result<BytesMut>>>,
    ended: bool,
    /// `fn() -> M`: the stream hands out `M`s and holds none, so it is
    /// `Send`, `Sync` and `Unpin` whatever `M` is.
    message: PhantomData<fn() -> M>,
}

impl<M> Pushes<M> {
    pub(crate) fn new(client: Client) -> Pushes<M> {
        let next = ReusableBoxFuture::new(next_frame(client.clone()));
        Pushes {
            client,
            next,
            ended: false,
            message: PhantomData,
        }
    }
}

async fn next_frame(client: Client) -> Option<Result<BytesMut>> {
    client.recv_frame().await
}

impl<M: Decode> Stream for Pushes<M> {
    type Item = Result<M>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<M>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let frame = match ready!(this.next.poll(cx)) {
            Some(frame) => frame,
            None => {
                this.ended = true;
                return Poll::Ready(None);
            }
        };
        this.next.set(next_frame(this.client.clone()));
        Poll::Ready(Some(
            frame.and_then(|frame| M::decode(frame).map_err(Error::Decode)),
        ))
    }
}

impl<M> fmt::Debug for Pushes<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pushes")
            .field("client", &self.client)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Pushes;

    #[test]
    fn the_stream_is_unpin_and_send_so_it_needs_no_pinning() {
        fn usable_as_is<T: Unpin + Send + Sync + 'static>() {}
        usable_as_is::<Pushes<String>>();
        usable_as_is::<Pushes<bytes::Bytes>>();
    }
}
