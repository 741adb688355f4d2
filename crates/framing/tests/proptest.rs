//! Property tests. The second one is the stand-in for a fuzz target of the
//! decoder: arbitrary and adversarial bytes, fed in arbitrary chunks, checked
//! against a reference model of the wire format.
//!
//! Runs are deterministic (fixed RNG seed). To explore further, set
//! `PROPTEST_RNG_SEED=<u64>` and/or `PROPTEST_CASES=<n>`; both are honoured.

use bytes::{Bytes, BytesMut};
use enchufe_framing::{Config, Error, FrameCodec, FrameReader, FrameWriter, HEADER_LEN};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use tokio_util::codec::Decoder;

const SEED: u64 = 0x656e_6368_7566_6521; // "enchufe!"

fn config(default_cases: u32) -> ProptestConfig {
    // `ProptestConfig::default()` already reads the PROPTEST_* variables.
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    // The seed reproduces any failure; don't write regression files into the tree.
    config.failure_persistence = None;
    config
}

/// The wire form of one frame, built by hand (the oracle).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len())
        .expect("test payload fits a u32 header")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(payload);
    out
}

/// Deterministic filler bytes (cheaper to generate than `vec(any::<u8>())`
/// for tens of KiB per case, and shrinking their content is pointless here).
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Cuts `data` into consecutive non-empty chunks whose sizes cycle through `sizes`.
fn chunks<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.clamp(1, rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Chunk sizes: mostly tiny (so headers get split), sometimes large.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![3 => 1usize..=8, 1 => 1usize..=4096], 1..16)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

// (a) Round trip through FrameWriter and a chunked FrameReader -----------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn frames_round_trip_through_arbitrary_read_chunking(
        specs in vec((0usize..2000, any::<u64>()), 0..=20),
        sizes in chunk_sizes(),
        batched in any::<bool>(),
    ) {
        let payloads: Vec<Vec<u8>> = specs.iter().map(|&(len, seed)| filler(len, seed)).collect();
        let expected_wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();

        let (wire, received) = runtime().block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                // Write: one send per frame, or one send_batch for all of them.
                let mut writer = FrameWriter::new(Vec::new(), &Config::default());
                if batched && !payloads.is_empty() {
                    let mut rest = payloads[1..].iter().cloned().map(Bytes::from);
                    let n = writer
                        .send_batch(Bytes::from(payloads[0].clone()), || rest.next())
                        .await
                        .unwrap();
                    assert_eq!(n, payloads.len());
                } else {
                    for p in &payloads {
                        writer.send(Bytes::from(p.clone())).await.unwrap();
                    }
                }
                let wire = writer.get_ref().clone();

                // Read back, the bytes arriving in the chosen chunks.
                let mut io = tokio_test::io::Builder::new();
                for chunk in chunks(&wire, &sizes) {
                    io.read(chunk);
                }
                let mut reader = FrameReader::new(io.build(), &Config::default());
                let mut received = Vec::new();
                while let Some(f) = reader.recv().await.unwrap() {
                    received.push(f.to_vec());
                }
                assert!(reader.read_buffer().is_empty());
                (wire, received)
            })
            .await
            .expect("round trip did not finish within 10 s")
        });

        prop_assert_eq!(wire, expected_wire, "writer output is not the wire format");
        prop_assert_eq!(received, payloads);
    }
}

// (b) Decoder fuzzing against a reference model --------------------------------

const LIMIT: usize = 1024;
const MAX_INPUT: usize = 4096;
/// Ceiling for the read buffer's capacity. The input is at most 4 KiB and
/// frames at most 1 KiB, so with allocator doubling a correct codec stays well
/// under this; reserving for a declared length over the limit would not.
const CAPACITY_CEILING: usize = 4 * (MAX_INPUT + LIMIT + HEADER_LEN);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Frame(Vec<u8>),
    TooLarge { declared: u64 },
    Eof { expected: u64, received: u64 },
    CleanEnd,
}

/// What a correct decoder must produce for `input`, read to its end.
fn reference(input: &[u8]) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        if rest.is_empty() {
            out.push(Outcome::CleanEnd);
            return out;
        }
        if rest.len() < HEADER_LEN {
            out.push(Outcome::Eof {
                expected: HEADER_LEN as u64,
                received: rest.len() as u64,
            });
            return out;
        }
        let declared = u32::from_be_bytes(rest[..HEADER_LEN].try_into().unwrap()) as usize;
        if declared > LIMIT {
            out.push(Outcome::TooLarge {
                declared: declared as u64,
            });
            return out;
        }
        if rest.len() < HEADER_LEN + declared {
            out.push(Outcome::Eof {
                expected: (HEADER_LEN + declared) as u64,
                received: rest.len() as u64,
            });
            return out;
        }
        out.push(Outcome::Frame(
            rest[HEADER_LEN..HEADER_LEN + declared].to_vec(),
        ));
        rest = &rest[HEADER_LEN + declared..];
    }
}

/// Maps a decoder error to an outcome; any other kind of error is a failure.
fn classify(err: Error) -> Result<Outcome, TestCaseError> {
    match err {
        Error::FrameTooLarge { declared, limit } => {
            prop_assert_eq!(limit, LIMIT);
            prop_assert!(declared > LIMIT as u64);
            Ok(Outcome::TooLarge { declared })
        }
        // The same oversize header, named as another protocol.
        Error::NotFrames {
            header,
            declared,
            limit,
            ..
        } => {
            prop_assert_eq!(limit, LIMIT);
            prop_assert_eq!(declared, u64::from(u32::from_be_bytes(header)));
            prop_assert!(declared > LIMIT as u64);
            Ok(Outcome::TooLarge { declared })
        }
        Error::UnexpectedEof { expected, received } => {
            prop_assert!(received < expected);
            Ok(Outcome::Eof { expected, received })
        }
        other => Err(TestCaseError::fail(format!(
            "decoder returned an unexpected error kind: {other:?}"
        ))),
    }
}

/// Drives the codec the way `FramedRead` does: `decode` after every chunk
/// until it has nothing, `decode_eof` at the end; stops at the first error.
fn run_codec(chunked: &[&[u8]]) -> Result<Vec<Outcome>, TestCaseError> {
    let mut codec = FrameCodec::new(&Config::default().max_frame_length(LIMIT));
    let mut buf = BytesMut::new();
    let mut out = Vec::new();

    for chunk in chunked {
        buf.extend_from_slice(chunk);
        loop {
            let capacity_before = buf.capacity();
            match codec.decode(&mut buf) {
                Ok(Some(f)) => {
                    prop_assert!(f.len() <= LIMIT);
                    out.push(Outcome::Frame(f.to_vec()));
                }
                Ok(None) => {
                    // Never sitting on a whole frame's worth of bytes.
                    prop_assert!(
                        buf.len() < LIMIT + HEADER_LEN,
                        "{} bytes buffered without a frame or an error",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    prop_assert_eq!(buf.capacity(), capacity_before, "grew on error");
                    out.push(classify(e)?);
                    return Ok(out);
                }
            }
            prop_assert!(
                buf.capacity() <= CAPACITY_CEILING,
                "capacity {}",
                buf.capacity()
            );
        }
        prop_assert!(
            buf.capacity() <= CAPACITY_CEILING,
            "capacity {}",
            buf.capacity()
        );
    }

    loop {
        let capacity_before = buf.capacity();
        match codec.decode_eof(&mut buf) {
            Ok(Some(f)) => {
                prop_assert!(f.len() <= LIMIT);
                out.push(Outcome::Frame(f.to_vec()));
            }
            Ok(None) => {
                prop_assert!(buf.is_empty(), "clean end with bytes left");
                out.push(Outcome::CleanEnd);
                return Ok(out);
            }
            Err(e) => {
                prop_assert_eq!(buf.capacity(), capacity_before, "grew on error");
                out.push(classify(e)?);
                return Ok(out);
            }
        }
    }
}

/// One piece of adversarial input.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // A well-formed small frame.
        4 => vec(any::<u8>(), 0..=48).prop_map(|p| frame(&p)),
        // A header right around the limit, with a body of arbitrary length
        // (possibly truncated by the end of input).
        2 => (LIMIT - 2..=LIMIT + 2, any::<u64>()).prop_map(|(len, seed)| {
            let mut v = (len as u32).to_be_bytes().to_vec();
            v.extend(filler(len, seed));
            v
        }),
        // An arbitrary header, followed by whatever comes next.
        1 => any::<u32>().prop_map(|n| n.to_be_bytes().to_vec()),
        // A header with a small length and fewer body bytes than declared.
        1 => (1u32..=64, vec(any::<u8>(), 0..=8))
            .prop_map(|(n, b)| [n.to_be_bytes().to_vec(), b].concat()),
        // The empty frame.
        1 => Just(vec![0, 0, 0, 0]),
        // Noise.
        1 => vec(any::<u8>(), 1..=6),
    ]
}

fn decoder_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Purely random bytes (mostly an oversize first header).
        1 => vec(any::<u8>(), 0..=MAX_INPUT),
        // Structured streams, which reach deep into the input.
        3 => vec(segment(), 0..24).prop_map(|segs| {
            let mut v = segs.concat();
            v.truncate(MAX_INPUT);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn decoder_never_panics_and_matches_reference_model(
        input in decoder_input(),
        sizes in chunk_sizes(),
    ) {
        let chunked = chunks(&input, &sizes);
        let got = run_codec(&chunked)?;
        prop_assert_eq!(got, reference(&input));
    }
}
