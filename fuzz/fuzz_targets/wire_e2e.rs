//! A whole connection over an in-memory I/O whose reads (and write sizes)
//! the input chooses, as h2's `fuzz_e2e` does: the `Wire` a server's or
//! client's driver is built on, reading frames as they trickle in, split
//! anywhere, with `Pending` in between, and writing replies through partial
//! and interrupted writes.
//!
//! Plain profile: every frame is echoed. Multiplexed: the first frame must
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
//! Input: byte 0 picks the profile and role, byte 1 `max_frame_length`
//! (16 B to 128 KiB, so frames past `LARGE_FRAME` happen), byte 2 the write
//! size (1 B to 32 KiB, a power of two) and how often a write is `Pending`;
//! the rest is the read script of `FuzzIo`.
#![no_main]

use std::task::Poll;

use enchufe_framing::mux::{Header, Hello, Kind};
use enchufe_framing::session::{classify, Inbound, Role};
use enchufe_framing::{BytesMut, Config, OutFrame, Wire};
use enchufe_fuzz::{block_on, reference_frames, End, FuzzIo, Script};
use libfuzzer_sys::fuzz_target;

/// Why the loop stopped reading.
enum Stop {
    /// The wire ended (cleanly or with an error of the stream).
    Wire(End),
    /// The multiplexed rules were broken: a driver closes the connection.
    Violation,
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
    let max = 16usize << (limit % 14);
    // Write sizes from 1 byte (every write partial) to 32 KiB: one byte at a
    // time through many large frames would make most runs slow, not better.
    let io = FuzzIo::new(script, 1 << (writes & 0x0f), u32::from(writes >> 4));
    let progress = io.progress.clone();
    let mut wire = Wire::new(io, &Config::default().max_frame_length(max));
    // Every poll of the wire should reach the I/O: a few polls in a row
    // without it is a loop that spins.
    let stall = 4;

    let mut frames: Vec<BytesMut> = Vec::new();
    let mut expected = Vec::new();
    let mut hello_seen = false;
    let stop = block_on(stall, &progress, |cx| loop {
        let frame = match wire.poll_frame(cx) {
            Poll::Ready(Ok(Some(frame))) => frame,
            Poll::Ready(Ok(None)) => return Poll::Ready(Stop::Wire(End::Clean)),
            Poll::Ready(Err(e)) => return Poll::Ready(Stop::Wire(End::of(Some(e)))),
            Poll::Pending => {
                // Nothing more buffered: flush what was queued, as a driver
                // does before it waits.
                if let Poll::Ready(Err(e)) = wire.poll_flush(cx) {
                    panic!("in-memory writes never fail: {e}");
                }
                return Poll::Pending;
            }
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
    let (want_frames, want_end) = reference_frames(&io.delivered, max);
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
