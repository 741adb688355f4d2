//! `MsgPack<T>` decoding untrusted bytes into a struct with every kind of
//! value, and into a recursive tree: no panic, no allocation from a declared
//! length, nesting bounded, and what decodes round-trips.
#![no_main]

use enchufe_framing::MsgPack;
use enchufe_fuzz::{round_trip, Sample, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip(data, MsgPack::<Sample>, |MsgPack(v)| v);
    round_trip(data, MsgPack::<Tree>, |MsgPack(v)| v);
});
