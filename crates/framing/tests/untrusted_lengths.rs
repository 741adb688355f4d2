//! Decoding untrusted bytes is bounded by the bytes, not by what they claim.
//!
//! Crafted payloads of a few bytes declare a 4-billion-element array, map,
//! string or byte string, or nest 100,000 levels deep. Each must be an
//! `Error::Decode`, at once, with the heap never growing by more than
//! [`HEAP_BOUND`] (serde pre-allocates at most 1 MiB from a declared length;
//! without that bound one payload would ask for tens of GiB, or recurse
//! until the stack overflows and the process aborts).
//!
//! Memory is measured with a counting global allocator (`peakmem-alloc`), so
//! every case runs in the one test of this binary, one after another.

use std::alloc::System;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use enchufe_framing::{Decode, Error, Json, MsgPack, Postcard};
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};
use serde::Deserialize;

#[global_allocator]
static ALLOC: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Most the heap may grow while decoding one crafted payload.
const HEAP_BOUND: usize = 4 << 20;
/// Most one decode may take (a debug build on a shared machine; a decoder
/// that walked 4 billion elements would take minutes).
const TIME_BOUND: Duration = Duration::from_secs(2);

/// A recursive type: how deep it nests is up to the bytes.
#[derive(Deserialize, Debug)]
#[allow(dead_code)] // only ever decoded, never read
struct Tree(Vec<Tree>);

fn refuse<M: Decode + std::fmt::Debug>(what: &str, payload: Vec<u8>) {
    let frame = BytesMut::from(&payload[..]);
    drop(payload);
    ALLOC.reset_peak_memory();
    let before = ALLOC.get_peak_memory();
    let start = Instant::now();
    let result = M::decode(frame);
    let took = start.elapsed();
    let grew = ALLOC.get_peak_memory().saturating_sub(before);
    match result {
        Err(Error::Decode(source)) => println!("{what}: {source} ({took:?}, heap +{grew} B)"),
        other => panic!("{what}: expected Error::Decode, got {other:?}"),
    }
    assert!(took < TIME_BOUND, "{what}: took {took:?}");
    assert!(grew <= HEAP_BOUND, "{what}: heap grew by {grew} B");
}

fn with_tail(head: &[u8], tail: &[u8]) -> Vec<u8> {
    [head, tail].concat()
}

#[test]
fn crafted_lengths_and_depths_fail_fast_without_allocating_them() {
    const FOUR_BILLION: [u8; 4] = [0xff; 4]; // u32 4,294,967,295, big-endian
    let some = [0x01u8; 64];

    // MessagePack: array32, map32, str32, bin32 with a 4-billion length.
    refuse::<MsgPack<Vec<u64>>>("msgpack array32", with_tail(&[0xdd], &FOUR_BILLION));
    refuse::<MsgPack<Vec<String>>>(
        "msgpack array32 of strings",
        with_tail(&with_tail(&[0xdd], &FOUR_BILLION), b"\xa1x\xa1y"),
    );
    refuse::<MsgPack<BTreeMap<u8, u8>>>(
        "msgpack map32",
        with_tail(&with_tail(&[0xdf], &FOUR_BILLION), &some),
    );
    refuse::<MsgPack<String>>(
        "msgpack str32",
        with_tail(&with_tail(&[0xdb], &FOUR_BILLION), b"abc"),
    );
    refuse::<MsgPack<Vec<u8>>>(
        "msgpack bin32",
        with_tail(&with_tail(&[0xc6], &FOUR_BILLION), &some),
    );
    refuse::<MsgPack<Tree>>("msgpack 100,000 levels", vec![0x91; 100_000]);

    // postcard: varint lengths of 4 billion (and u64::MAX) for a sequence,
    // a string and a map.
    let varint_4g = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let varint_max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    refuse::<Postcard<Vec<u64>>>("postcard seq 4G", with_tail(&varint_4g, &some));
    refuse::<Postcard<Vec<u64>>>("postcard seq u64::MAX", with_tail(&varint_max, &some));
    refuse::<Postcard<String>>("postcard string 4G", with_tail(&varint_4g, b"abc"));
    refuse::<Postcard<BTreeMap<u32, u32>>>("postcard map 4G", with_tail(&varint_4g, &some));
    // postcard itself has no nesting limit: without enchufe's, 20 KiB of
    // this overflowed the stack and aborted the process.
    refuse::<Postcard<Tree>>("postcard 100,000 levels", vec![0x01; 100_000]);

    // JSON declares no lengths, but it nests: serde_json stops at 128 levels.
    refuse::<Json<Tree>>("json 100,000 levels", vec![b'['; 100_000]);
}
