//! Framing micro-benchmarks: `FrameCodec` encode and decode throughput for
//! 16 B, 1 KiB and 64 KiB payloads, and what `FrameWriter::send_batch` buys
//! over one flushed `send` per frame (64 small frames into `tokio::io::sink()`,
//! so this measures the user-space cost only, no syscalls).
//!
//! ```text
//! cargo bench --bench framing
//! cargo bench --bench framing -- --quick     # a short, indicative run
//! ```
//!
//! Results and how to read them: `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use enchufe::framing::{Config, FrameCodec, FrameWriter, MAX_BATCH};
use tokio_util::codec::{Decoder, Encoder};

const SIZES: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

/// Small frames for the batching comparison.
const SMALL: usize = 32;

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (size, label) in SIZES {
        let payload = Bytes::from(vec![0xab; size]);
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(BenchmarkId::new("encode", label), &payload, |b, payload| {
            let mut codec = FrameCodec::default();
            let mut dst = BytesMut::with_capacity(4 + size);
            b.iter(|| {
                dst.clear();
                // `Bytes::clone` is a reference count: the copy measured is
                // the codec's, into its write buffer.
                codec.encode(payload.clone(), &mut dst).unwrap();
                black_box(&dst);
            });
        });

        let mut wire = BytesMut::new();
        FrameCodec::default()
            .encode(payload.clone(), &mut wire)
            .unwrap();
        group.bench_with_input(BenchmarkId::new("decode", label), &wire, |b, wire| {
            let mut codec = FrameCodec::default();
            // A fresh read buffer per iteration, made outside the timing:
            // decoding splits the frame off the buffer.
            b.iter_batched(
                || wire.clone(),
                |mut src| {
                    let frame = codec.decode(&mut src).unwrap().unwrap();
                    debug_assert_eq!(frame.len(), size);
                    frame
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn batching(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let frame = Bytes::from(vec![0xcd; SMALL]);
    let frames = MAX_BATCH;

    let mut group = c.benchmark_group("write_64_small_frames");
    group.throughput(Throughput::Elements(frames as u64));

    group.bench_function("send_batch", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let frame = frame.clone();
            async move {
                let mut writer = FrameWriter::new(tokio::io::sink(), &Config::default());
                let start = Instant::now();
                for _ in 0..iters {
                    let mut left = frames - 1;
                    let written = writer
                        .send_batch(frame.clone(), || {
                            (left > 0).then(|| {
                                left -= 1;
                                frame.clone()
                            })
                        })
                        .await
                        .unwrap();
                    debug_assert_eq!(written, frames);
                }
                start.elapsed()
            }
        });
    });

    group.bench_function("send_each", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let frame = frame.clone();
            async move {
                let mut writer = FrameWriter::new(tokio::io::sink(), &Config::default());
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..frames {
                        writer.send(frame.clone()).await.unwrap();
                    }
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

/// `criterion_group!` makes a `pub fn` that `missing_docs` would flag and
/// that cannot carry a doc comment; in a private module it is not exported.
mod group {
    use super::{batching, codec, Criterion, Duration};

    criterion::criterion_group! {
        name = benches;
        config = Criterion::default()
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        targets = codec, batching
    }
}
criterion_main!(group::benches);
