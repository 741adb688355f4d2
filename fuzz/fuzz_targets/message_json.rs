//! `Json<T>` decoding untrusted bytes into a struct with every kind of
//! value, and into a recursive tree: no panic, nesting bounded, and what
//! decodes encodes and decodes to the same value.
#![no_main]

use enchufe_framing::Json;
use enchufe_fuzz::{round_trip, Sample, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip(data, Json::<Sample>, |Json(v)| v);
    round_trip(data, Json::<Tree>, |Json(v)| v);
});
