//! `Postcard<T>` decoding untrusted bytes into a struct with every kind of
//! value, and into a recursive tree: no panic, no allocation from a
//! declared length, nesting bounded (by enchufe: postcard has no limit of
//! its own), and what decodes round-trips.
#![no_main]

use enchufe_framing::Postcard;
use enchufe_fuzz::{round_trip, Sample, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip(data, Postcard::<Sample>, |Postcard(v)| v);
    round_trip(data, Postcard::<Tree>, |Postcard(v)| v);
});
