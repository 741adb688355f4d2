//! The HTTP/1.1 load generator ([`Kind::Http`](super::Kind::Http)), wrk's
//! way: keep-alive connections, each with `depth` requests in flight
//! (`1`: one request, its reply, the next; `16`: pipelined ×16). Request
//! `n` of a connection is `GET /hola/n`, so every reply is checked for its
//! status, its framing and its body (`hola, n`), in order.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{Budget, Tally};
use crate::error::{Error, Result};
use crate::flight;

/// The most bytes of replies the reader holds: far over a pipelined
/// window of hello replies (~150 bytes each).
const MAX_BUFFERED: usize = 1 << 20;

/// One keep-alive connection's requests and the check of their replies.
#[derive(Debug)]
pub(super) struct HttpGenerator {
    pub(super) conn: usize,
    pub(super) depth: usize,
    pub(super) budget: Arc<Budget>,
}

impl HttpGenerator {
    /// Writer and reader in one task (`try_join`), as the frame generator:
    /// the writer sends every request the window allows in one write, the
    /// reader frees a place per reply checked.
    pub(super) async fn run(self, stream: TcpStream) -> Result<Tally> {
        let (mut read, mut write) = stream.into_split();
        let window = Semaphore::new(self.depth);
        let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<u64>(self.depth.max(1));

        let writer = async {
            let mut n = 0u64;
            let mut batch = Vec::new();
            'run: loop {
                // One place at least (waiting for a reply), then every
                // free place, all in one write.
                let first = window
                    .acquire()
                    .await
                    .map_err(|_| Error::harness("window closed"))?;
                first.forget();
                let mut places = 1;
                while let Ok(p) = window.try_acquire() {
                    p.forget();
                    places += 1;
                }
                batch.clear();
                let mut last = false;
                for _ in 0..places {
                    if !self.budget.take() {
                        last = true;
                        break;
                    }
                    batch.extend_from_slice(
                        format!("GET /hola/{n} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes(),
                    );
                    flight::owe(&sent_tx, n).await?;
                    n += 1;
                }
                if !batch.is_empty() {
                    write.write_all(&batch).await?;
                }
                if last {
                    break 'run;
                }
            }
            drop(sent_tx);
            // Kept open until the reader is done: dropping a write half
            // half-closes the connection.
            Ok::<_, Error>(write)
        };

        let reader = async {
            let mut tally = Tally::default();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            while let Some(n) = sent_rx.recv().await {
                loop {
                    if let Some(used) = reply(&buf, self.conn, n)? {
                        let _ = buf.split_to(used);
                        break;
                    }
                    if buf.len() > MAX_BUFFERED {
                        return Err(Error::harness("a reply over 1 MiB"));
                    }
                    if read.read_buf(&mut buf).await? == 0 {
                        return Err(flight::closed(self.conn, tally.frames, &sent_rx));
                    }
                }
                window.add_permits(1);
                tally.frames += 1;
            }
            Ok(tally)
        };

        let (_write, tally) = tokio::try_join!(writer, reader)?;
        Ok(tally)
    }
}

/// The length of the reply to request `n` at the start of `buf`, once it
/// is whole; an error when it is not `200` with body `hola, n\n`.
fn reply(buf: &[u8], conn: usize, n: u64) -> Result<Option<usize>> {
    let mismatch = |detail: String| Error::Mismatch {
        conn,
        frame: n,
        detail,
    };
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(mismatch(format!("not an HTTP response: {e}"))),
    };
    if response.code != Some(200) {
        return Err(mismatch(format!("status {:?}", response.code)));
    }
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| mismatch("no Content-Length".into()))?;
    if buf.len() < head + length {
        return Ok(None);
    }
    let body = &buf[head..head + length];
    let expected = format!("hola, {n}\n");
    if body != expected.as_bytes() {
        let got = String::from_utf8_lossy(body);
        return Err(mismatch(format!("body {got:?}, not {expected:?}")));
    }
    Ok(Some(head + length))
}
