//! `Text` (`String::decode`): valid UTF-8 decodes to exactly those bytes;
//! anything else is `InvalidUtf8` with the length of the valid prefix.
#![no_main]

use enchufe_framing::{BytesMut, Decode, Error, Text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Text::decode(BytesMut::from(data)) {
        Ok(text) => assert_eq!(text.as_bytes(), data),
        Err(Error::InvalidUtf8 { valid_up_to }) => {
            let e = std::str::from_utf8(data).expect_err("not UTF-8");
            assert_eq!(valid_up_to, e.valid_up_to());
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
