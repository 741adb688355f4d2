//! The hand-written generator in the multiplexed profile
//! ([`Kind::FramesMux`](super::Kind::FramesMux)): the plain generator's
//! window and batching, after a hello exchange, with each frame a 9-byte
//! header (`request`, id `n + 1`) and the payload, encoded straight into
//! the write buffer. Replies may come in any order: each is checked
//! against the payload its id names.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use enchufe::framing::mux::{self, Header, Hello, Kind};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::{Encoder, FramedRead, FramedWrite};

use super::{Budget, Tally};
use crate::error::{Error, Result};
use crate::flight;
use crate::floor::codec;
use crate::payload::{check, Payloads};

/// One connection of the multiplexed generator.
#[derive(Debug)]
pub(super) struct MuxGenerator {
    pub(super) conn: usize,
    pub(super) payloads: Payloads,
    pub(super) depth: usize,
    pub(super) budget: Arc<Budget>,
}

/// A request frame: length, header, payload, in one copy into the buffer.
struct Requests;

impl Encoder<(u64, Bytes)> for Requests {
    type Error = std::io::Error;

    fn encode(&mut self, (id, body): (u64, Bytes), dst: &mut BytesMut) -> std::io::Result<()> {
        let header = Header {
            kind: Kind::Request,
            id,
        };
        dst.reserve(4 + mux::HEADER_LEN + body.len());
        dst.put_u32((mux::HEADER_LEN + body.len()) as u32);
        dst.put_slice(&header.to_bytes());
        dst.put_slice(&body);
        Ok(())
    }
}

impl MuxGenerator {
    /// Hellos, then writer and reader in one task as the plain generator.
    pub(super) async fn run(self, mut stream: TcpStream) -> Result<Tally> {
        let hello = Hello::new("bench")
            .encode()
            .map_err(|e| Error::harness(e.to_string()))?;
        let mut first = BytesMut::with_capacity(4 + hello.len());
        first.put_u32(hello.len() as u32);
        first.put_slice(&hello);
        stream.write_all(&first).await?;
        let (read, write) = stream.into_split();
        let mut replies = FramedRead::new(read, codec());
        match replies.next().await {
            Some(Ok(theirs)) if mux::is_hello(&theirs) => {}
            _ => return Err(Error::harness("the server sent no multiplexed hello")),
        }
        let mut frames = FramedWrite::new(write, Requests);
        let window = Semaphore::new(self.depth);
        // Requests sent, so the reader knows how many replies to expect.
        let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<()>(self.depth.max(1));

        let writer = async {
            let mut n = 0u64;
            while self.budget.take() {
                flight::take::<_, (u64, Bytes)>(&window, &mut frames).await?;
                flight::owe(&sent_tx, ()).await?;
                frames.feed((n + 1, self.payloads.get(n).clone())).await?;
                n += 1;
            }
            SinkExt::<(u64, Bytes)>::flush(&mut frames).await?;
            drop(sent_tx);
            Ok::<_, Error>(frames)
        };

        let reader = async {
            let mut tally = Tally::default();
            while sent_rx.recv().await.is_some() {
                let reply =
                    flight::next_echo(&mut replies, self.conn, tally.frames, &sent_rx).await?;
                let (header, body) =
                    Header::split(reply).map_err(|e| Error::harness(e.to_string()))?;
                if header.kind != Kind::Response || header.id == 0 {
                    return Err(Error::harness(format!("not a reply: {header:?}")));
                }
                let n = header.id - 1;
                check(self.conn, n, &body, self.payloads.get(n))?;
                window.add_permits(1);
                tally.frames += 1;
            }
            Ok(tally)
        };

        let (_frames, tally) = tokio::try_join!(writer, reader)?;
        Ok(tally)
    }
}
