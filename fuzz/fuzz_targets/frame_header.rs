//! The plain profile's frame decoder (`FrameCodec`): a 4-byte big-endian
//! length, then the payload, fed in chunks the input chooses, against a
//! reference parser of the same bytes. Frames, the length limit (checked on
//! the header) and EOF inside a frame must all agree with the reference.
//!
//! Input: byte 0 sets `max_frame_length` (0 to 1,020); then, repeatedly, a
//! control byte gives the next chunk's size (1 to 64) and that many bytes
//! follow.
#![no_main]

use enchufe_framing::{BytesMut, Config, FrameCodec};
use enchufe_fuzz::{reference_frames, End, Script};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut script = Script::new(data);
    let Some(limit) = script.byte() else { return };
    let max = usize::from(limit) * 4;
    let mut codec = FrameCodec::new(&Config::default().max_frame_length(max));

    let mut stream = Vec::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // Takes every frame `decode` (or, at the end, `decode_eof`) gives.
    let mut drain = |codec: &mut FrameCodec, buf: &mut BytesMut, eof: bool| loop {
        let next = if eof {
            codec.decode_eof(buf)
        } else {
            codec.decode(buf)
        };
        match next {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        }
    };
    let mut result = Ok(());
    while let Some(control) = script.byte() {
        let chunk = script.take(usize::from(control) % 64 + 1);
        stream.extend_from_slice(chunk);
        buf.extend_from_slice(chunk);
        result = drain(&mut codec, &mut buf, false);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = drain(&mut codec, &mut buf, true);
    }
    let error = result.err();
    let end = End::of(error);
    // The codec stops at the first error; the reference reads the same
    // bytes (it may know of later bytes only if they were never fed).
    let (want_frames, want_end) = reference_frames(&stream, max);
    let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    assert_eq!(got, want_frames);
    assert_eq!(end, want_end);
});
