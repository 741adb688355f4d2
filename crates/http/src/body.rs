//! [`Body`]: a request's body, streamed to the handler as it arrives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use enchufe_framing::{poll_chunk, Chunks, Error, Result};
use tokio::sync::mpsc;

/// How many chunks wait between the connection and the handler: a body
/// holds at most this many reads of the socket in memory (each at most the
/// wire's read buffer), whatever its length.
const CHUNKS: usize = 4;

/// A request's body (`Content-Length` or chunked), handed to the handler
/// in chunks as its bytes arrive: memory stays bounded by a few reads
/// whatever its length, within [`Config::max_body`](crate::Config::max_body).
///
/// Nothing is read from the socket for it until the handler asks (so an
/// `Expect: 100-continue` request gets its `100 Continue` only then); a
/// body the handler leaves unread is drained after the reply, up to
/// [`Config::drain_bytes`](crate::Config::drain_bytes), or the connection
/// is closed: the next request is never read from the middle of a body.
///
/// Read it with [`Body::chunk`], all at once with [`Body::to_bytes`], or as
/// an [`AsyncRead`](tokio::io::AsyncRead) (or a `Stream` of chunks).
#[derive(Debug)]
pub struct Body {
    len: Option<u64>,
    rx: Option<mpsc::Receiver<Result<Bytes>>>,
    /// Set when the handler first asks for a chunk: the connection starts
    /// reading the body (and answers `100 Continue` if it was expected).
    /// `None` for an empty body: nothing to ask for, nothing allocated.
    wanted: Option<Arc<AtomicBool>>,
    /// What `poll_read` has not handed out yet of the last chunk.
    current: Bytes,
    /// The end (or an error) was seen: no more chunks.
    done: bool,
}

/// The connection's end of a [`Body`].
#[derive(Debug)]
pub(crate) struct BodySender {
    pub(crate) tx: mpsc::Sender<Result<Bytes>>,
    pub(crate) wanted: Arc<AtomicBool>,
}

impl Body {
    /// A body with no bytes (a request without one).
    pub fn empty() -> Body {
        Body {
            len: Some(0),
            rx: None,
            wanted: None,
            current: Bytes::new(),
            done: true,
        }
    }

    /// A body whose chunks the connection sends; `len` is the declared
    /// length (`None`: chunked). An empty chunk marks the end; the sender
    /// dropped before it is a body cut short.
    pub(crate) fn channel(len: Option<u64>) -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(CHUNKS);
        let wanted = Arc::new(AtomicBool::new(false));
        let body = Body {
            len,
            rx: Some(rx),
            wanted: Some(wanted.clone()),
            current: Bytes::new(),
            done: false,
        };
        (BodySender { tx, wanted }, body)
    }

    /// The declared length (`Content-Length`), or `None` for a chunked
    /// body.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the request has no body (`Content-Length: 0` or none).
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// The next chunk: `Ok(None)` at the end of the body.
    ///
    /// # Errors
    /// [`Error::UnexpectedEof`] when the connection ended inside the body;
    /// [`Error::FrameTooLarge`] past
    /// [`Config::max_body`](crate::Config::max_body); [`Error::Malformed`]
    /// for a broken chunked encoding. The server answers these itself
    /// (`400`, `413`) and closes, whatever the handler replies.
    ///
    /// # Cancel safety
    /// Cancel-safe: a chunk not returned stays queued.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        std::future::poll_fn(|cx| poll_chunk(self, cx)).await
    }

    /// The whole body in one buffer, refused past `limit` bytes.
    ///
    /// # Errors
    /// As [`Body::chunk`], and [`Error::FrameTooLarge`] past `limit`.
    pub async fn to_bytes(&mut self, limit: usize) -> Result<Bytes> {
        let mut all = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            if all.len() + chunk.len() > limit {
                return Err(Error::FrameTooLarge {
                    declared: (all.len() + chunk.len()) as u64,
                    limit,
                });
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Chunks for Body {
    fn rest(&mut self) -> &mut Bytes {
        &mut self.current
    }

    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        let Some(rx) = self.rx.as_mut().filter(|_| !self.done) else {
            return Poll::Ready(Ok(None));
        };
        if let Some(wanted) = &self.wanted {
            wanted.store(true, Ordering::Relaxed);
        }
        let end = match ready!(rx.poll_recv(cx)) {
            Some(Ok(chunk)) if !chunk.is_empty() => return Poll::Ready(Ok(Some(chunk))),
            // An empty chunk is the end of the body.
            Some(Ok(_)) => Ok(None),
            Some(Err(e)) => Err(e),
            // The connection ended inside the body.
            None => Err(Error::UnexpectedEof {
                expected: self.len.unwrap_or(0),
                received: 0,
            }),
        };
        // The end or an error: either way the body is done.
        self.done = true;
        Poll::Ready(end)
    }
}

enchufe_framing::chunked_body_io!(Body);

impl BodySender {
    /// Whether the handler has asked for the body yet.
    pub(crate) fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_cut_body_reads_as_unexpected_eof() {
        let (tx, mut body) = Body::channel(Some(6));
        tx.tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        let err = tokio::time::timeout(Duration::from_secs(5), body.read_to_end(&mut got))
            .await
            .expect("not hung")
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(got, b"abc");
    }
}
