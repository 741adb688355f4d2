//! A frame whose body comes in chunks ([`Link::send_stream`](super::Link::send_stream)):
//! what the handle hands the driver, and the task side that reads the body.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// A streamed frame on its way out: the driver writes its header, then
/// every chunk as it comes, before any other frame.
#[derive(Debug)]
pub(super) struct StreamOut {
    /// The body's length, as the header says.
    pub(super) len: u64,
    /// The body, a few chunks at a time (the sender's memory bound).
    pub(super) chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    /// Told once the whole body is queued for writing, or why not.
    pub(super) done: oneshot::Sender<Result<()>>,
}

/// Reads exactly `len` bytes from `reader` into chunks for a streamed frame.
/// A reader that ends early sends its error down too: the frame cannot be
/// finished, and the driver ends the connection.
pub(super) async fn feed<R: AsyncRead + Unpin>(
    mut reader: R,
    len: u64,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut left = len;
    while left > 0 {
        let want = left.min(enchufe_framing::STREAM_CHUNK as u64) as usize;
        let mut chunk = BytesMut::with_capacity(want);
        let n = match reader.read_buf(&mut (&mut chunk).limit(want)).await {
            Ok(0) => {
                let cut = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the reader ended {left} bytes short of the {len} declared"),
                );
                let error = Error::from(std::io::Error::new(cut.kind(), cut.to_string()));
                let _ = tx.send(Err(cut)).await;
                return Err(error);
            }
            Ok(n) => n,
            Err(e) => {
                let error = Error::from(std::io::Error::new(e.kind(), e.to_string()));
                let _ = tx.send(Err(e)).await;
                return Err(error);
            }
        };
        left -= n as u64;
        if tx.send(Ok(chunk.freeze())).await.is_err() {
            // The driver is gone: the caller hears why from it.
            return Ok(());
        }
    }
    Ok(())
}
