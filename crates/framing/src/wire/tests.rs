//! Byte-level tests of the wire: split reads, large frames, budgets, writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limits::*;
use super::*;
use crate::{Config, Error, OutFrame, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cfg(max: usize) -> Config {
    Config::default().max_frame_length(max)
}

/// `body` as a length-prefixed frame.
/// `err` is the stream ending `received` bytes into a frame of `expected`
/// (its header included).
pub(super) fn assert_cut(err: &Error, expected: u64, received: u64) {
    match err {
        Error::UnexpectedEof {
            expected: e,
            received: r,
        } => assert_eq!((*e, *r), (expected, received)),
        other => panic!("not a cut frame: {other:?}"),
    }
}

pub(super) fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn frames_split_across_reads_and_batched_in_one_read() {
    let (mut raw, io) = tokio::io::duplex(64);
    let mut wire = Wire::new(io, &cfg(1024));
    let mut bytes = framed(b"hola");
    bytes.extend(framed(b""));
    bytes.extend(framed(b"adios"));
    let writer = tokio::spawn(async move {
        for chunk in bytes.chunks(3) {
            raw.write_all(chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        raw
    });
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"hola");
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"");
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"adios");
    drop(writer.await.unwrap());
    assert!(wire.recv().await.unwrap().is_none());
}

/// Serves its bytes as fast as asked, recording each read's span of
/// the stream.
struct Spans {
    data: Vec<u8>,
    at: usize,
    reads: Vec<(usize, usize)>,
}

impl AsyncRead for Spans {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        self.reads.push((at, at + n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Spans {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_large_frame_grows_to_exactly_its_length() {
    // An odd length no recycled buffer fits: the frame's own buffer
    // doubles with what arrives, and its last step stops at the length.
    let len = (5 << 20) + 7;
    let (mut raw, io) = tokio::io::duplex(64 << 10);
    let mut wire = Wire::new(io, &cfg(8 << 20));
    let writer = tokio::spawn(async move {
        raw.write_all(&framed(&vec![3; len])).await.unwrap();
        raw
    });
    let frame = wire.recv().await.unwrap().unwrap();
    assert_eq!((frame.len(), frame.capacity()), (len, len));
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn a_large_body_is_read_up_to_its_end_and_no_further() {
    // A buffer with room for far more than the frame, as a recycled one
    // has: the read must still stop at the frame's end, or the next
    // frame's bytes would be copied out of it.
    let large = vec![7; 3 * LARGE_FRAME];
    crate::recycle::give_back(BytesMut::with_capacity(4 * large.len()).freeze());
    let mut data = framed(&large);
    let end = data.len();
    data.extend(framed(b"next"));
    let io = Spans {
        data,
        at: 0,
        reads: Vec::new(),
    };
    let mut wire = Wire::new(io, &cfg(1 << 20));
    assert_eq!(wire.recv().await.unwrap().unwrap().len(), large.len());
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"next");
    let reads = &wire.io.reads;
    assert!(
        reads.iter().all(|&(a, b)| b <= end || a >= end),
        "a read crossed the frame's end at {end}: {reads:?}"
    );
}

#[tokio::test]
async fn a_declared_length_reserves_nothing_until_bytes_arrive() {
    let (mut raw, io) = tokio::io::duplex(1 << 20);
    let max = 8 << 20;
    let mut wire = Wire::new(io, &cfg(max));
    raw.write_all(&((max - 1) as u32).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(&[7; 10]).await.unwrap();
    let pending = futures::poll!(std::future::poll_fn(|cx| wire.poll_frame(cx)));
    assert!(pending.is_pending());
    assert!(
        wire.read_capacity() <= LARGE_START,
        "{} bytes held for 14 received",
        wire.read_capacity()
    );
    // It grows with what arrives: 1 MiB in, at most about 2 MiB held.
    raw.write_all(&vec![7; 1 << 20]).await.unwrap();
    for _ in 0..64 {
        let _ = futures::poll!(std::future::poll_fn(|cx| wire.poll_frame(cx)));
    }
    assert!(wire.read_capacity() <= 2 << 20, "{}", wire.read_capacity());
}

#[tokio::test]
async fn wires_sharing_a_budget_wait_for_room_and_never_hold_more() {
    let budget = MemoryBudget::new(1 << 20);
    let wire = |budget: &MemoryBudget| {
        let (raw, io) = tokio::io::duplex(4 << 20);
        let mut wire = Wire::new(io, &cfg(8 << 20));
        wire.set_memory_budget(Some(budget.clone()));
        (raw, wire)
    };
    let (mut raw_a, mut a) = wire(&budget);
    let (mut raw_b, mut b) = wire(&budget);
    // Frames of 1 MiB: either alone fits, both do not.
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let bytes = framed(&body);
    let poll = |w: &mut Wire<_>| {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        for _ in 0..256 {
            if let Poll::Ready(r) = w.poll_frame(&mut cx) {
                return Some(r.unwrap().unwrap());
            }
        }
        None
    };
    // A holds most of its frame; B sends all of its and must wait.
    raw_a.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
    assert!(poll(&mut a).is_none());
    raw_b.write_all(&bytes).await.unwrap();
    assert!(poll(&mut b).is_none(), "B waits for room");
    assert!(budget.pauses() >= 1);
    assert!(budget.held() <= budget.limit(), "{}", budget.held());
    let held = a.read_capacity() + b.read_capacity();
    assert!(
        held <= (1 << 20) + 2 * budget::UNCHARGED,
        "{held} bytes held"
    );
    // A's connection ends: its bytes come back, and B's frame arrives.
    drop((a, raw_a));
    let frame = b.recv().await.unwrap().unwrap();
    assert!(frame[..] == body[..]);
    assert_eq!(budget.held(), 0, "a frame handed out gives its bytes back");
    assert!(budget.peak() <= budget.limit());
}

#[tokio::test]
async fn a_large_frame_arrives_whole_in_its_own_buffer_and_the_next_follows() {
    let (mut raw, io) = tokio::io::duplex(8192);
    let mut wire = Wire::new(io, &cfg(4 << 20));
    let big: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i % 251) as u8).collect();
    let mut bytes = framed(&big);
    bytes.extend(framed(b"next"));
    tokio::spawn(async move { raw.write_all(&bytes).await.unwrap() });
    let frame = wire.recv().await.unwrap().unwrap();
    assert_eq!(&frame[..], &big[..]);
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"next");
}

#[tokio::test]
async fn eof_inside_a_frame_is_an_error_and_between_frames_is_none() {
    let (mut raw, io) = tokio::io::duplex(1 << 20);
    let mut wire = Wire::new(io, &cfg(1 << 20));
    raw.write_all(&framed(b"ok")).await.unwrap();
    raw.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
    drop(raw);
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"ok");
    let err = wire.recv().await.unwrap_err();
    assert_cut(&err, 13, 6);

    let (raw, io) = tokio::io::duplex(64);
    let mut wire = Wire::new(io, &cfg(64));
    drop(raw);
    assert!(wire.recv().await.unwrap().is_none());
}

#[tokio::test]
async fn an_oversize_header_is_refused_before_its_body() {
    let (mut raw, io) = tokio::io::duplex(64);
    let mut wire = Wire::new(io, &cfg(100));
    raw.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let err = wire.recv().await.unwrap_err();
    assert!(matches!(
        err,
        Error::FrameTooLarge {
            declared: 0xffff_ffff,
            limit: 100
        }
    ));
    assert!(wire.read_capacity() <= READ_CHUNK);
}

#[tokio::test]
async fn small_and_large_frames_leave_in_order_and_intact() {
    let (io, mut raw) = tokio::io::duplex(1 << 16);
    let mut wire = Wire::new(io, &cfg(4 << 20));
    let big = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let frames = [
        OutFrame::plain(Bytes::from_static(b"a")),
        OutFrame::plain(big.clone()),
        OutFrame::with_header(
            crate::mux::Header {
                kind: crate::mux::Kind::Push,
                id: 9,
            },
            big.clone(),
        ),
        OutFrame::plain(Bytes::from_static(b"z")),
    ];
    let mut expected = Vec::new();
    for frame in &frames {
        wire.write(frame).unwrap();
        expected.extend((frame.len() as u32).to_be_bytes());
        expected.extend(frame.prefix());
        expected.extend(&frame.body()[..]);
    }
    assert_eq!(wire.queued(), expected.len());
    let total = expected.len();
    let reader = tokio::spawn(async move {
        let mut got = vec![0; total];
        raw.read_exact(&mut got).await.unwrap();
        got
    });
    wire.flush().await.unwrap();
    assert_eq!(wire.queued(), 0);
    assert_eq!(wire.written(), total as u64);
    assert!(reader.await.unwrap() == expected);
}

/// Messages ending in a `;`, at most 8 bytes.
#[derive(Debug)]
struct Semicolons;
impl Split for Semicolons {
    fn split(&mut self, buf: &mut BytesMut, _max: usize) -> Result<Option<BytesMut>> {
        match buf.iter().position(|&b| b == b';') {
            Some(end) if end < 8 => Ok(Some(buf.split_to(end + 1))),
            None if buf.len() < 8 => Ok(None),
            _ => Err(Error::FrameTooLarge {
                declared: buf.len() as u64,
                limit: 8,
            }),
        }
    }
}

#[tokio::test]
async fn another_codec_splits_reads_writes_unprefixed_and_bounds_the_buffer() {
    let (mut raw, io) = tokio::io::duplex(64);
    let mut wire = Wire::with_split(io, &cfg(1024), Semicolons);
    raw.write_all(b"ab;c").await.unwrap();
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"ab;");
    raw.write_all(b"d;").await.unwrap();
    assert_eq!(&wire.recv().await.unwrap().unwrap()[..], b"cd;");
    wire.write(&OutFrame::plain(Bytes::from_static(b"ok;")))
        .unwrap();
    wire.flush().await.unwrap();
    let mut got = [0; 3];
    raw.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ok;");
    raw.write_all(b"123456789").await.unwrap();
    assert!(matches!(
        wire.recv().await,
        Err(Error::FrameTooLarge { limit: 8, .. })
    ));
    // EOF inside a message is not a clean close.
    let (mut raw, io) = tokio::io::duplex(64);
    let mut wire = Wire::with_split(io, &cfg(1024), Semicolons);
    raw.write_all(b"ab").await.unwrap();
    drop(raw);
    let err = wire.recv().await.unwrap_err();
    assert_cut(&err, 3, 2);
}

#[test]
fn length_prefix_split_is_the_wires_rule_over_a_buffer() {
    let mut buf = BytesMut::from(&framed(b"hola")[..]);
    buf.extend_from_slice(&framed(b"")[..]);
    buf.extend_from_slice(&[0, 0, 0]);
    let mut lp = LengthPrefix;
    assert_eq!(&lp.split(&mut buf, 8).unwrap().unwrap()[..], b"hola");
    assert_eq!(&lp.split(&mut buf, 8).unwrap().unwrap()[..], b"");
    assert!(lp.split(&mut buf, 8).unwrap().is_none());
    buf.extend_from_slice(&[9]);
    assert!(lp.split(&mut buf, 8).unwrap_err().is_frame_too_large());
}

#[tokio::test]
async fn an_oversize_write_is_refused_and_nothing_is_queued() {
    let (io, _raw) = tokio::io::duplex(64);
    let mut wire = Wire::new(io, &cfg(3));
    let err = wire
        .write(&OutFrame::plain(Bytes::from_static(b"four")))
        .unwrap_err();
    assert!(matches!(err, Error::TooLargeToSend { len: 4, limit: 3 }));
    assert!(err
        .to_string()
        .contains("max_frame_length of 3 bytes; nothing was sent"));
    assert_eq!(wire.queued(), 0);
}
