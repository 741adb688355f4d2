//! A whole connection over an in-memory I/O whose reads (and write sizes)
//! the input chooses, as h2's `fuzz_e2e` does: the `Wire` a server's or
//! client's driver is built on, reading frames as they trickle in, split
//! anywhere, with `Pending` in between, and writing replies through partial
//! and interrupted writes.
//!
//! Plain profile: every frame is echoed; with streams on (byte 0, bit 3),
//! frames over the limit (up to a stream limit) come as a streamed body in
//! chunks (`poll_next`, `poll_chunk`) and are echoed chunk by chunk
//! (`write_stream_header`, `write_chunk`). Multiplexed: the first frame must
//! be a hello (answered with ours), then every frame is classified for the
//! role (`session::classify`) and each request is answered with its body.
//! Checked:
//! - the frames read are exactly those of a reference parser of the bytes
//!   delivered, and the stream ends as the reference says (clean, a frame
//!   over the limit, EOF inside a frame);
//! - the bytes written are exactly the replies queued, in order, whatever
//!   the write sizes (large bodies go out by vectored writes);
//! - no frame is over the limit, and the connection never spins: every poll
//!   reaches the I/O (a few polls in a row without I/O fail); nothing is
//!   written after shutdown.
//!
//! Input: byte 0 picks the profile and role (and streams), byte 1
//! `max_frame_length` (16 B to 128 KiB, so frames past `LARGE_FRAME`
//! happen) and, in its top bit, whether the I/O takes vectored writes (a
//! socket) or not (many wrappers); byte 2 the write
//! size (1 B to 32 KiB, a power of two) and how often a write is `Pending`;
//! the rest is the read script of `FuzzIo`.
#![no_main]

use std::task::{Context, Poll};

use enchufe_engine::session::{classify, Inbound, Role};
use enchufe_framing::mux::{Header, Hello, Kind};
use enchufe_framing::{BytesMut, Config, Next, OutFrame, Wire, STREAM_CHUNK};
use enchufe_fuzz::{block_on, reference_frames_streamed, End, FuzzIo, Script};
use libfuzzer_sys::fuzz_target;

/// Why the loop stopped reading.
enum Stop {
    /// The wire ended (cleanly or with an error of the stream).
    Wire(End),
    /// The multiplexed rules were broken: a driver closes the connection.
    Violation,
}

/// Nothing more is buffered: flush what was queued, as a driver does before
/// it waits.
fn wait<T>(wire: &mut Wire<FuzzIo<'_>>, cx: &mut Context<'_>) -> Poll<T> {
    if let Poll::Ready(Err(e)) = wire.poll_flush(cx) {
        panic!("in-memory writes never fail: {e}");
    }
    Poll::Pending
}

fn queue(wire: &mut Wire<FuzzIo<'_>>, expected: &mut Vec<u8>, frame: OutFrame) {
    let len = u32::try_from(frame.len()).expect("replies fit a header");
    expected.extend_from_slice(&len.to_be_bytes());
    expected.extend_from_slice(frame.prefix());
    expected.extend_from_slice(frame.body());
    wire.write(&frame).expect("a reply within the limit");
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script::new(data);
    let (Some(mode), Some(limit), Some(writes)) = (script.byte(), script.byte(), script.byte())
    else {
        return;
    };
    let mux = mode & 1 == 1;
    let role = match (mode >> 1) % 3 {
        0 => Role::Server,
        1 => Role::Client,
        _ => Role::Peer,
    };
    let max = 16usize << ((limit & 0x7f) % 14);
    // Plain only: frames over `max` and up to `stream_max` are streamed
    // (handed out in chunks and echoed chunk by chunk).
    let stream_max = if !mux && mode & 0x08 != 0 {
        max * (2 + usize::from(mode >> 4))
    } else {
        0
    };
    // Write sizes from 1 byte (every write partial) to 32 KiB: one byte at a
    // time through many large frames would make most runs slow, not better.
    let mut io = FuzzIo::new(script, 1 << (writes & 0x0f), u32::from(writes >> 4));
    io.vectored = limit & 0x80 != 0;
    let progress = io.progress.clone();
    let mut wire = Wire::new(io, &Config::default().max_frame_length(max));
    wire.set_max_stream_length(stream_max as u64);
    // Every poll of the wire should reach the I/O: a few polls in a row
    // without it is a loop that spins.
    let stall = 4;

    let mut frames: Vec<BytesMut> = Vec::new();
    let mut expected = Vec::new();
    let mut hello_seen = false;
    // A streamed frame being read: its body so far and what is left of it.
    let mut streaming: Option<(BytesMut, u64)> = None;
    let stop = block_on(stall, &progress, |cx| loop {
        if let Some((body, left)) = &mut streaming {
            match wire.poll_chunk(cx) {
                Poll::Ready(Ok(Some(chunk))) => {
                    assert!(chunk.len() <= STREAM_CHUNK && chunk.len() as u64 <= *left);
                    assert!(!chunk.is_empty(), "an empty chunk before the end");
                    *left -= chunk.len() as u64;
                    body.extend_from_slice(&chunk);
                    expected.extend_from_slice(&chunk);
                    wire.write_chunk(&chunk);
                }
                Poll::Ready(Ok(None)) => {
                    assert_eq!(*left, 0, "a stream ended short without an error");
                    frames.push(std::mem::take(body));
                    streaming = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Stop::Wire(End::of(Some(e)))),
                Poll::Pending => return wait(&mut wire, cx),
            }
            continue;
        }
        let next = if stream_max > 0 {
            wire.poll_next(cx)
        } else {
            wire.poll_frame(cx)
                .map_ok(|f| f.map_or(Next::Eof, Next::Frame))
        };
        let frame = match next {
            Poll::Ready(Ok(Next::Frame(frame))) => frame,
            Poll::Ready(Ok(Next::Stream(len))) => {
                assert!(
                    len > max as u64 && len <= stream_max as u64,
                    "stream of {len}"
                );
                wire.write_stream_header(len).expect("a length that fits");
                expected.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
                streaming = Some((BytesMut::new(), len));
                continue;
            }
            Poll::Ready(Ok(Next::Eof)) => return Poll::Ready(Stop::Wire(End::Clean)),
            Poll::Ready(Err(e)) => return Poll::Ready(Stop::Wire(End::of(Some(e)))),
            Poll::Pending => return wait(&mut wire, cx),
        };
        assert!(frame.len() <= max, "a frame of {} over {max}", frame.len());
        frames.push(frame.clone());
        if !mux {
            queue(&mut wire, &mut expected, OutFrame::plain(frame.freeze()));
            continue;
        }
        if !hello_seen {
            if Hello::decode(&frame).is_err() {
                return Poll::Ready(Stop::Violation);
            }
            hello_seen = true;
            let ours = Hello::new("fuzz").encode().expect("a short id");
            queue(&mut wire, &mut expected, OutFrame::plain(ours));
            continue;
        }
        match classify(frame, role) {
            Ok(Inbound::Request { id, body }) => {
                let header = Header {
                    kind: Kind::Response,
                    id,
                };
                queue(
                    &mut wire,
                    &mut expected,
                    OutFrame::with_header(header, body.freeze()),
                );
            }
            Ok(_) => {}
            Err(_) => return Poll::Ready(Stop::Violation),
        }
    });
    block_on(stall, &progress, |cx| wire.poll_flush(cx)).expect("in-memory writes never fail");
    block_on(stall, &progress, |cx| wire.poll_shutdown(cx)).expect("in-memory shutdown");
    assert_eq!(wire.queued(), 0, "flushed, yet bytes are queued");

    let io = wire.get_ref();
    let (want_frames, want_end) = reference_frames_streamed(&io.delivered, max, stream_max);
    let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    match stop {
        Stop::Wire(end) => {
            assert_eq!(got, want_frames);
            assert_eq!(end, want_end);
        }
        // Stopped early: what was read is a prefix of the reference.
        Stop::Violation => assert_eq!(want_frames.get(..got.len()), Some(&got[..])),
    }
    assert!(io.shut_down);
    assert!(
        io.written == expected,
        "wrote {} bytes, queued {} (first difference at {:?})",
        io.written.len(),
        expected.len(),
        io.written.iter().zip(&expected).position(|(a, b)| a != b)
    );
});
