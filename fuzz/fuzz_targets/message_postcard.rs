//! `Postcard<T>` decoding untrusted bytes into a struct with every kind of
//! value: no panic, no allocation from a declared length, and what decodes
//! round-trips. (No recursive type: postcard does not bound nesting; see
//! `Postcard`'s docs.)
#![no_main]

use enchufe_framing::Postcard;
use enchufe_fuzz::{round_trip, Sample};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip(data, Postcard::<Sample>, |Postcard(v)| v);
});
