//! `Transport`, `FrameReader` and `FrameWriter` over real async I/O:
//! scripted partial reads (`tokio_test::io::Builder`), in-memory duplex pipes
//! and plain `Vec<u8>` / `&[u8]` sinks and sources.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use enchufe_framing::{Config, Error, FrameReader, FrameWriter, Json, Transport, MAX_BATCH};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_test::io::Builder;

/// Every async test runs inside this: a hang fails the test instead of the suite.
async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("test did not finish within 10 s")
}

/// The wire form of one frame, built by hand (independent of the codec).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len())
        .expect("test payload fits a u32 header")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(payload);
    out
}

fn limit(bytes: usize) -> Config {
    Config::default().max_frame_length(bytes)
}

/// Reads every frame from `wire` (as one in-memory source) until a clean EOF.
async fn read_all_frames(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = FrameReader::new(wire, &Config::default());
    let mut frames = Vec::new();
    while let Some(f) = reader.recv().await.expect("well-formed stream") {
        frames.push(f.to_vec());
    }
    frames
}

/// An `AsyncWrite` that records the bytes and how many `poll_write` calls
/// (i.e. syscalls, on a socket) it took.
#[derive(Debug, Default)]
struct CountingWriter {
    bytes: Vec<u8>,
    writes: usize,
}

impl AsyncWrite for CountingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes += 1;
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// 1. Partial reads ------------------------------------------------------------

fn split_frame_mock(payload: &[u8]) -> tokio_test::io::Mock {
    let wire = frame(payload);
    let (head, body) = wire.split_at(4);
    let mut b = Builder::new();
    for byte in head {
        b.read(std::slice::from_ref(byte));
    }
    b.read(&body[..1])
        .read(&body[1..8])
        .read(&body[8..100])
        .read(&body[100..])
        .build()
}

#[tokio::test]
async fn reader_reassembles_frame_split_across_many_reads() {
    within(async {
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut reader = FrameReader::new(split_frame_mock(&payload), &Config::default());
        let got = reader.recv().await.unwrap().expect("one frame");
        assert_eq!(&got[..], &payload[..]);
        assert!(reader.recv().await.unwrap().is_none(), "then a clean EOF");
    })
    .await;
}

#[tokio::test]
async fn transport_reassembles_frame_split_across_many_reads() {
    within(async {
        let text = "x".repeat(150) + &"ñ".repeat(75); // 300 bytes of UTF-8
        let mut t = Transport::new(split_frame_mock(text.as_bytes()));
        assert_eq!(t.recv_msg::<String>().await.unwrap(), Some(text));
        assert!(t.recv().await.unwrap().is_none());
    })
    .await;
}

// 2. Several frames in one read -------------------------------------------------

#[tokio::test]
async fn reader_yields_two_frames_from_a_single_read_in_order() {
    within(async {
        let io = Builder::new()
            .read(&[frame(b"primero"), frame(b"segundo")].concat())
            .build();
        let mut reader = FrameReader::new(io, &Config::default());
        assert_eq!(
            reader.recv().await.unwrap().as_deref(),
            Some(&b"primero"[..])
        );
        assert_eq!(
            reader.recv().await.unwrap().as_deref(),
            Some(&b"segundo"[..])
        );
        assert!(reader.recv().await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn transport_yields_three_frames_from_a_single_read_in_order() {
    within(async {
        let io = Builder::new()
            .read(&[frame(b"uno"), frame(b""), frame(b"tres")].concat())
            .build();
        let mut t = Transport::new(io);
        assert_eq!(
            t.recv_msg::<String>().await.unwrap().as_deref(),
            Some("uno")
        );
        assert_eq!(t.recv_msg::<String>().await.unwrap().as_deref(), Some(""));
        assert_eq!(
            t.recv_msg::<String>().await.unwrap().as_deref(),
            Some("tres")
        );
        assert!(t.recv().await.unwrap().is_none());
    })
    .await;
}

// 3. Inbound limit ------------------------------------------------------------

#[tokio::test]
async fn reader_rejects_4gib_header_without_allocating() {
    within(async {
        // A header announcing u32::MAX bytes, then a little garbage.
        let wire = [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
        let mut reader = FrameReader::new(&wire[..], &Config::default());
        let err = reader.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    declared: 4_294_967_295,
                    limit: 8_388_608
                }
            ),
            "{err:?}"
        );
        let capacity = reader.read_buffer().capacity();
        assert!(
            capacity < 64 * 1024,
            "read buffer grew to {capacity} bytes for a rejected frame"
        );
    })
    .await;
}

#[tokio::test]
async fn transport_rejects_4gib_header() {
    within(async {
        let io = Builder::new().read(&[0xFF, 0xFF, 0xFF, 0xFF]).build();
        let mut t = Transport::new(io);
        let err = t.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    declared: 4_294_967_295,
                    limit: 8_388_608
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn reader_accepts_frame_of_exactly_the_limit() {
    within(async {
        let payload = [b'z'; 16];
        let wire = frame(&payload);
        let mut reader = FrameReader::new(&wire[..], &limit(16));
        assert_eq!(reader.recv().await.unwrap().as_deref(), Some(&payload[..]));
        assert!(reader.recv().await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn reader_rejects_frame_one_byte_over_the_limit() {
    within(async {
        let wire = frame(&[b'z'; 17]);
        let mut reader = FrameReader::new(&wire[..], &limit(16));
        let err = reader.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    declared: 17,
                    limit: 16
                }
            ),
            "{err:?}"
        );
        assert!(err.is_fatal());
    })
    .await;
}

// 4. EOF inside a frame --------------------------------------------------------

#[tokio::test]
async fn reader_eof_inside_body_is_unexpected_eof_with_exact_counts() {
    within(async {
        // Declares 10 bytes; the peer sends 3 of them (in two reads) and closes.
        let io = Builder::new()
            .read(&[0, 0, 0, 10, b'a'])
            .read(b"bc")
            .build();
        let mut reader = FrameReader::new(io, &Config::default());
        let err = reader.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    expected: 14,
                    received: 7
                }
            ),
            "{err:?}"
        );
        assert!(err.is_fatal());
    })
    .await;
}

#[tokio::test]
async fn transport_eof_inside_body_after_a_good_frame() {
    within(async {
        // One good frame, then a frame declaring 300 bytes of which 100 arrive.
        let mut wire = frame(b"ok");
        wire.extend_from_slice(&300u32.to_be_bytes());
        wire.extend_from_slice(&[9u8; 100]);
        let io = Builder::new().read(&wire[..50]).read(&wire[50..]).build();
        let mut t = Transport::new(io);
        assert_eq!(t.recv().await.unwrap().as_deref(), Some(&b"ok"[..]));
        let err = t.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    expected: 304,
                    received: 104
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn reader_eof_inside_header_is_unexpected_eof_4_2() {
    within(async {
        let mut wire = frame(b"ok");
        wire.extend_from_slice(&[0, 0]);
        let mut reader = FrameReader::new(&wire[..], &Config::default());
        assert_eq!(reader.recv().await.unwrap().as_deref(), Some(&b"ok"[..]));
        let err = reader.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    expected: 4,
                    received: 2
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn reader_clean_eof_between_frames_is_none() {
    within(async {
        let wire = [frame(b"a"), frame(b"b")].concat();
        let io = Builder::new().read(&wire).build();
        let mut reader = FrameReader::new(io, &Config::default());
        assert!(reader.recv().await.unwrap().is_some());
        assert!(reader.recv().await.unwrap().is_some());
        assert!(reader.recv().await.unwrap().is_none());

        // An empty stream is a clean close too.
        let mut empty = FrameReader::new(&[][..], &Config::default());
        assert!(empty.recv().await.unwrap().is_none());
    })
    .await;
}

// 5. Invalid UTF-8 ------------------------------------------------------------

#[tokio::test]
async fn recv_msg_string_invalid_utf8_reports_valid_up_to_and_stream_survives() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        let wire = [
            frame(b"hola \xFF mundo"),
            frame(b"sigue"),
            frame("añ".as_bytes().split_at(2).0), // "a" + first byte of "ñ"
            frame(b"fin"),
        ]
        .concat();
        peer.write_all(&wire).await.unwrap();
        peer.shutdown().await.unwrap();

        let err = t.recv_msg::<String>().await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidUtf8 { valid_up_to: 5 }),
            "{err:?}"
        );
        assert!(!err.is_fatal());
        assert_eq!(
            t.recv_msg::<String>().await.unwrap().as_deref(),
            Some("sigue")
        );

        let err = t.recv_msg::<String>().await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidUtf8 { valid_up_to: 1 }),
            "{err:?}"
        );
        assert_eq!(
            t.recv_msg::<String>().await.unwrap().as_deref(),
            Some("fin")
        );
        assert!(t.recv().await.unwrap().is_none());
    })
    .await;
}

// 6. Zero-length frames -------------------------------------------------------

#[tokio::test]
async fn transport_zero_length_frame_is_some_empty() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        peer.write_all(&[0, 0, 0, 0, 0, 0, 0, 0]).await.unwrap();
        peer.shutdown().await.unwrap();
        assert_eq!(t.recv().await.unwrap().as_deref(), Some(&[][..]));
        assert_eq!(t.recv_msg::<String>().await.unwrap().as_deref(), Some(""));
        assert!(t.recv().await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn sending_empty_payload_writes_exactly_four_zero_bytes() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        t.send(Bytes::new()).await.unwrap();
        t.send_msg("").await.unwrap();
        drop(t);
        let mut raw = Vec::new();
        peer.read_to_end(&mut raw).await.unwrap();
        assert_eq!(raw, [0u8, 0, 0, 0, 0, 0, 0, 0]);
    })
    .await;
}

// 7. Wire format --------------------------------------------------------------

#[tokio::test]
async fn send_msg_hola_writes_exact_wire_bytes() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        t.send_msg("hola").await.unwrap();
        drop(t);
        let mut raw = Vec::new();
        peer.read_to_end(&mut raw).await.unwrap();
        assert_eq!(raw, [0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x6c, 0x61]);
    })
    .await;
}

#[tokio::test]
async fn non_ascii_text_round_trips_with_utf8_byte_length_header() {
    within(async {
        let text = "ñandú 🦀";
        assert_eq!(text.len(), 12, "UTF-8 bytes, not chars");
        let (a, b) = tokio::io::duplex(4096);
        let mut left = Transport::new(a);
        left.send_msg(text).await.unwrap();
        left.send_msg(text.to_string()).await.unwrap();
        drop(left);

        // The first frame, raw: header is the UTF-8 byte length.
        let mut raw = b;
        let mut header = [0u8; 4];
        raw.read_exact(&mut header).await.unwrap();
        assert_eq!(u32::from_be_bytes(header) as usize, text.len());
        assert_eq!(header, [0, 0, 0, 12]);
        let mut body = vec![0u8; text.len()];
        raw.read_exact(&mut body).await.unwrap();
        assert_eq!(body, text.as_bytes());

        // The second frame, through a transport.
        let mut right = Transport::new(raw);
        assert_eq!(
            right.recv_msg::<String>().await.unwrap().as_deref(),
            Some(text)
        );
        assert!(right.recv().await.unwrap().is_none());
    })
    .await;
}

// 8. Outbound limit -----------------------------------------------------------

#[tokio::test]
async fn transport_send_over_limit_is_too_large_to_send_and_writes_nothing() {
    within(async {
        // The mock only allows the one good frame sent afterwards: any byte of
        // the oversize frame reaching the I/O makes it panic.
        let io = Builder::new().write(&frame(b"ok")).build();
        let mut t = Transport::with_config(io, &limit(16));
        let err = t.send(Bytes::from(vec![0xAB; 17])).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLargeToSend { len: 17, limit: 16 }),
            "{err:?}"
        );
        let err = t.send_msg("x".repeat(1000)).await.unwrap_err();
        assert!(matches!(err, Error::TooLargeToSend { len: 1000, .. }));
        t.send_msg("ok").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn writer_send_over_limit_is_too_large_to_send_and_writes_nothing() {
    within(async {
        let mut w = FrameWriter::new(Vec::new(), &limit(16));
        let err = w.send(Bytes::from(vec![0xAB; 17])).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLargeToSend { len: 17, limit: 16 }),
            "{err:?}"
        );
        assert!(w.get_ref().is_empty(), "nothing reached the I/O");
        assert!(w.write_buffer().is_empty(), "nothing left queued either");
        w.send(Bytes::from(vec![0xCD; 16])).await.unwrap();
        assert_eq!(w.get_ref(), &frame(&[0xCD; 16]));
    })
    .await;
}

// 9. JSON ---------------------------------------------------------------------

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    sensor: String,
    values: Vec<f64>,
    ok: bool,
    note: Option<String>,
}

#[tokio::test]
async fn json_struct_round_trips() {
    within(async {
        let (a, b) = tokio::io::duplex(4096);
        let (mut left, mut right) = (Transport::new(a), Transport::new(b));
        let sent = Reading {
            sensor: "termómetro".into(),
            values: vec![21.5, -3.25, 0.0],
            ok: true,
            note: None,
        };
        left.send_msg(&Json(&sent)).await.unwrap();
        let Json(back): Json<Reading> = right.recv_msg().await.unwrap().expect("a frame");
        assert_eq!(back, sent);
    })
    .await;
}

#[tokio::test]
async fn json_type_mismatch_is_decode_error_and_stream_survives() {
    within(async {
        let (a, b) = tokio::io::duplex(4096);
        let (mut left, mut right) = (Transport::new(a), Transport::new(b));
        left.send_msg(Json(vec![1, 2, 3])).await.unwrap(); // not a Reading
        left.send_msg("{not json").await.unwrap();
        let good = Reading {
            sensor: "s".into(),
            values: vec![],
            ok: false,
            note: Some("n".into()),
        };
        left.send_msg(Json(&good)).await.unwrap();
        drop(left);

        let err = right.recv_msg::<Json<Reading>>().await.unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        assert!(!err.is_fatal());
        let err = right.recv_msg::<Json<Reading>>().await.unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        let Json(back) = right.recv_msg::<Json<Reading>>().await.unwrap().unwrap();
        assert_eq!(back, good);
        assert!(right.recv().await.unwrap().is_none());
    })
    .await;
}

// 10. send_batch ----------------------------------------------------------------

fn numbered(n: usize) -> VecDeque<Bytes> {
    (0..n).map(|i| Bytes::from(format!("frame-{i}"))).collect()
}

#[tokio::test]
async fn send_batch_writes_all_frames_in_order_with_one_write_and_returns_count() {
    within(async {
        let mut queue = numbered(5);
        let expected: Vec<Vec<u8>> = queue.iter().map(|b| b.to_vec()).collect();
        let mut w = FrameWriter::new(CountingWriter::default(), &Config::default());
        let first = queue.pop_front().unwrap();
        let n = w.send_batch(first, || queue.pop_front()).await.unwrap();
        assert_eq!(n, 5);
        assert!(queue.is_empty());
        assert!(w.write_buffer().is_empty(), "flushed");
        assert_eq!(w.get_ref().writes, 1, "one write for the whole burst");
        assert_eq!(read_all_frames(&w.get_ref().bytes).await, expected);
    })
    .await;
}

#[tokio::test]
async fn send_batch_with_nothing_more_sends_just_the_first() {
    within(async {
        let mut w = FrameWriter::new(Vec::new(), &Config::default());
        let n = w
            .send_batch(Bytes::from_static(b"solo"), || None::<Bytes>)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(w.get_ref(), &frame(b"solo"));
    })
    .await;
}

#[tokio::test]
async fn send_batch_caps_at_max_batch_and_leaves_the_rest_queued() {
    within(async {
        const TOTAL: usize = 200;
        const { assert!(TOTAL > 3 * MAX_BATCH, "the test needs several batches") };
        let mut queue = numbered(TOTAL);
        let expected: Vec<Vec<u8>> = queue.iter().map(|b| b.to_vec()).collect();
        let mut w = FrameWriter::new(Vec::new(), &Config::default());

        let first = queue.pop_front().unwrap();
        let n = w.send_batch(first, || queue.pop_front()).await.unwrap();
        assert_eq!(n, MAX_BATCH);
        assert_eq!(
            queue.len(),
            TOTAL - MAX_BATCH,
            "no frame taken beyond the cap"
        );
        assert_eq!(
            queue.front().map(|b| b.to_vec()),
            Some(format!("frame-{MAX_BATCH}").into_bytes()),
            "the next frame is still first in line"
        );
        assert_eq!(
            read_all_frames(w.get_ref()).await,
            expected[..MAX_BATCH].to_vec(),
            "exactly the first batch was written, flushed"
        );

        let mut counts = vec![n];
        while let Some(first) = queue.pop_front() {
            counts.push(w.send_batch(first, || queue.pop_front()).await.unwrap());
        }
        let mut expected_counts = vec![MAX_BATCH; TOTAL / MAX_BATCH];
        if !TOTAL.is_multiple_of(MAX_BATCH) {
            expected_counts.push(TOTAL % MAX_BATCH);
        }
        assert_eq!(counts, expected_counts);
        assert_eq!(read_all_frames(w.get_ref()).await, expected);
    })
    .await;
}

// 11. split ---------------------------------------------------------------------

#[tokio::test]
async fn split_keeps_bytes_buffered_before_the_split() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        // Both frames in one write, so one read pulls both into the buffer.
        peer.write_all(&[frame(b"antes"), frame(b"despues")].concat())
            .await
            .unwrap();
        assert_eq!(t.recv().await.unwrap().as_deref(), Some(&b"antes"[..]));

        let (mut reader, _writer) = t.split();
        assert_eq!(
            reader.read_buffer().len(),
            frame(b"despues").len(),
            "precondition: the second frame was already buffered"
        );
        peer.shutdown().await.unwrap(); // nothing more will come from the pipe
        assert_eq!(
            reader.recv().await.unwrap().as_deref(),
            Some(&b"despues"[..])
        );
        assert!(reader.recv().await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn split_keeps_the_configured_limit() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let (mut reader, mut writer) = Transport::with_config(a, &limit(16)).split();
        let err = writer.send(Bytes::from(vec![0; 17])).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLargeToSend { limit: 16, .. }),
            "{err:?}"
        );
        peer.write_all(&frame(&[0; 17])).await.unwrap();
        let err = reader.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    declared: 17,
                    limit: 16
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

/// BUG (src/transport.rs, `Transport::split`): `parts.write_buf` is dropped,
/// so frames queued with `Transport::feed` and not yet flushed are lost.
#[tokio::test]
async fn split_keeps_frames_fed_but_not_yet_flushed() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        t.feed(Bytes::from_static(b"pendiente")).await.unwrap();
        let (_reader, mut writer) = t.split();
        writer.close().await.unwrap();
        let mut raw = Vec::new();
        peer.read_to_end(&mut raw).await.unwrap();
        assert_eq!(
            raw,
            frame(b"pendiente"),
            "the fed frame must reach the peer"
        );
    })
    .await;
}

/// BUG (src/transport.rs, `Transport::split`): the codec's state is replaced
/// by a fresh one, so if a `recv` was cancelled after the header was consumed
/// (recv is documented as cancel-safe), the reader half parses the body as a
/// header.
#[tokio::test]
async fn split_after_cancelled_recv_mid_frame_keeps_the_frame() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        let wire = frame(b"abcdefgh");
        peer.write_all(&wire[..8]).await.unwrap(); // header + "abcd"
                                                   // One poll: reads what is there, cannot finish the frame, is dropped.
        assert!(t.recv().now_or_never().is_none(), "frame is incomplete");

        let (mut reader, _writer) = t.split();
        peer.write_all(&wire[8..]).await.unwrap();
        peer.shutdown().await.unwrap();
        let got = reader.recv().await;
        assert_eq!(
            got.expect("no error").as_deref(),
            Some(&b"abcdefgh"[..]),
            "the cancelled recv must not lose the frame"
        );
    })
    .await;
}

#[tokio::test]
async fn recv_cancelled_mid_frame_then_resumed_keeps_the_frame() {
    within(async {
        let (a, mut peer) = tokio::io::duplex(4096);
        let mut t = Transport::new(a);
        let wire = frame(b"abcdefgh");
        peer.write_all(&wire[..6]).await.unwrap();
        assert!(t.recv().now_or_never().is_none());
        peer.write_all(&wire[6..]).await.unwrap();
        assert_eq!(t.recv().await.unwrap().as_deref(), Some(&b"abcdefgh"[..]));
    })
    .await;
}

// 12. close -----------------------------------------------------------------------

#[tokio::test]
async fn writer_close_half_closes_peer_reads_frames_then_none() {
    within(async {
        let (a, b) = tokio::io::duplex(4096);
        let (mut reader, mut writer) = Transport::new(a).split();
        let mut peer = Transport::new(b);

        writer.send_msg("uno").await.unwrap();
        writer.feed(Bytes::from_static(b"dos")).await.unwrap(); // not flushed
        writer.close().await.unwrap(); // flushes, then shuts down

        assert_eq!(
            peer.recv_msg::<String>().await.unwrap().as_deref(),
            Some("uno")
        );
        assert_eq!(
            peer.recv_msg::<String>().await.unwrap().as_deref(),
            Some("dos")
        );
        assert!(
            peer.recv().await.unwrap().is_none(),
            "EOF after the last frame"
        );

        // Half-close: the other direction still works.
        peer.send_msg("respuesta").await.unwrap();
        assert_eq!(
            reader.recv_msg::<String>().await.unwrap().as_deref(),
            Some("respuesta")
        );
    })
    .await;
}

// Error classification --------------------------------------------------------

#[test]
fn only_stream_level_errors_are_fatal() {
    assert!(Error::FrameTooLarge {
        declared: 1,
        limit: 0
    }
    .is_fatal());
    assert!(Error::UnexpectedEof {
        expected: 4,
        received: 0
    }
    .is_fatal());
    assert!(Error::from(io::Error::from(io::ErrorKind::ConnectionReset)).is_fatal());
    assert!(!Error::InvalidUtf8 { valid_up_to: 0 }.is_fatal());
    assert!(!Error::Decode("x".into()).is_fatal());
    assert!(!Error::Encode("x".into()).is_fatal());
}
