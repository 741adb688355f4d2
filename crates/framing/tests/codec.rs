//! `FrameCodec` driven directly through tokio-util's `Decoder`/`Encoder`
//! traits, with no I/O: exact buffer contents, limits and EOF accounting.

use bytes::{BufMut, Bytes, BytesMut};
use enchufe_framing::{Config, Error, FrameCodec, HEADER_LEN};
use tokio_util::codec::{Decoder, Encoder};

/// The wire form of one frame, built by hand (the oracle, independent of the codec).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len())
        .expect("test payload fits a u32 header")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(payload);
    out
}

fn codec_with_limit(limit: usize) -> FrameCodec {
    FrameCodec::new(&Config::default().max_frame_length(limit))
}

/// Calls `decode` until it yields nothing, collecting the frames.
fn drain(codec: &mut FrameCodec, buf: &mut BytesMut) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(f) = codec.decode(buf).expect("decode must not fail here") {
        frames.push(f.to_vec());
    }
    frames
}

#[test]
fn codec_decodes_frame_fed_byte_by_byte_in_header_and_chunks_in_body() {
    let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let wire = frame(&payload);
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();

    // The header, one byte at a time: nothing comes out.
    for &b in &wire[..HEADER_LEN] {
        buf.put_u8(b);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
    // The body in uneven chunks: still nothing until the last byte.
    let body = &wire[HEADER_LEN..];
    for chunk in [&body[..1], &body[1..8], &body[8..100], &body[100..299]] {
        buf.extend_from_slice(chunk);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
    buf.extend_from_slice(&body[299..]);
    let got = codec.decode(&mut buf).unwrap().expect("frame complete");
    assert_eq!(&got[..], &payload[..]);
    assert!(buf.is_empty(), "the frame consumed exactly its bytes");
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None, "clean end");
}

#[test]
fn codec_decodes_two_and_three_frames_from_one_buffer_in_order() {
    let mut codec = FrameCodec::default();

    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[frame(b"uno"), frame(b"dos")].concat());
    assert_eq!(
        drain(&mut codec, &mut buf),
        vec![b"uno".to_vec(), b"dos".to_vec()]
    );
    assert!(buf.is_empty());

    buf.extend_from_slice(&[frame(b"a"), frame(b""), frame(b"ccc")].concat());
    assert_eq!(
        drain(&mut codec, &mut buf),
        vec![b"a".to_vec(), Vec::new(), b"ccc".to_vec()]
    );
    assert!(buf.is_empty());
}

#[test]
fn codec_rejects_4gib_header_against_default_limit_without_reserving() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, b'x', b'y']);
    let capacity_before = buf.capacity();

    let err = codec.decode(&mut buf).unwrap_err();
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
    assert_eq!(buf.capacity(), capacity_before, "nothing reserved for it");
    assert!(err.is_fatal());
}

#[test]
fn codec_names_an_http_request_where_a_header_should_be() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&b"POST /api HTTP/1.1\r\n"[..]);
    let capacity_before = buf.capacity();
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFrames {
                looks_like: enchufe_framing::Foreign::HttpRequest,
                header: [b'P', b'O', b'S', b'T'],
                declared: 1_347_375_956,
                limit: 8_388_608,
            }
        ),
        "{err:?}"
    );
    assert_eq!(buf.capacity(), capacity_before, "nothing reserved for it");
    assert!(err.is_fatal() && err.is_frame_too_large());
}

#[test]
fn codec_accepts_frame_of_exactly_the_limit() {
    let mut codec = codec_with_limit(16);
    assert_eq!(codec.max_frame_length(), 16);
    let payload = [7u8; 16];
    let mut buf = BytesMut::from(&frame(&payload)[..]);
    let got = codec.decode(&mut buf).unwrap().expect("a full frame");
    assert_eq!(&got[..], &payload[..]);

    let mut out = BytesMut::new();
    codec
        .encode(Bytes::copy_from_slice(&payload), &mut out)
        .expect("exactly the limit may be sent");
    assert_eq!(&out[..], &frame(&payload)[..]);
}

#[test]
fn codec_rejects_frame_one_byte_over_the_limit_on_the_header_alone() {
    let mut codec = codec_with_limit(16);
    // Only the header: the decision must not wait for the body.
    let mut buf = BytesMut::from(&17u32.to_be_bytes()[..]);
    let err = codec.decode(&mut buf).unwrap_err();
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
}

#[test]
fn codec_limit_above_u32_max_is_clamped() {
    let codec = FrameCodec::new(&Config::default().max_frame_length(usize::MAX));
    assert_eq!(codec.max_frame_length(), u32::MAX as usize);
}

#[test]
fn codec_zero_length_frame_is_some_empty() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
    let got = codec.decode(&mut buf).unwrap();
    assert_eq!(got.as_deref(), Some(&[][..]));
    assert!(buf.is_empty());

    // Also when it is the last thing before EOF.
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
    assert_eq!(
        codec.decode_eof(&mut buf).unwrap().as_deref(),
        Some(&[][..])
    );
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn codec_encodes_empty_payload_as_four_zero_bytes() {
    let mut codec = FrameCodec::default();
    let mut out = BytesMut::new();
    codec.encode(Bytes::new(), &mut out).unwrap();
    assert_eq!(&out[..], &[0u8, 0, 0, 0][..]);
}

#[test]
fn codec_encodes_hola_byte_exact() {
    let mut codec = FrameCodec::default();
    let mut out = BytesMut::new();
    codec.encode(Bytes::from_static(b"hola"), &mut out).unwrap();
    assert_eq!(
        &out[..],
        &[0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x6c, 0x61][..]
    );
}

#[test]
fn codec_encode_over_limit_is_too_large_to_send_and_leaves_dst_untouched() {
    let mut codec = codec_with_limit(16);
    let mut out = BytesMut::from(&b"prev"[..]);
    let err = codec
        .encode(Bytes::from(vec![1u8; 17]), &mut out)
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLargeToSend { len: 17, limit: 16 }),
        "{err:?}"
    );
    assert!(err.is_frame_too_large());
    assert_eq!(&out[..], b"prev");
}

#[test]
fn codec_eof_inside_body_reports_expected_and_received_counts() {
    let mut codec = FrameCodec::default();
    // Declares 10 bytes, 3 arrive: 4 + 3 of 4 + 10.
    let mut buf = BytesMut::from(&[0u8, 0, 0, 10, b'a', b'b', b'c'][..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let err = codec.decode_eof(&mut buf).unwrap_err();
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
}

#[test]
fn codec_eof_right_after_header_counts_header_only() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnexpectedEof {
                expected: 260,
                received: 4
            }
        ),
        "{err:?}"
    );
}

#[test]
fn codec_eof_inside_header_reports_four_expected() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&[0u8, 0][..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let err = codec.decode_eof(&mut buf).unwrap_err();
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
}

#[test]
fn codec_eof_between_frames_is_none() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&frame(b"fin")[..]);
    assert_eq!(
        codec.decode_eof(&mut buf).unwrap().as_deref(),
        Some(&b"fin"[..])
    );
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    assert_eq!(codec.decode_eof(&mut BytesMut::new()).unwrap(), None);
}
