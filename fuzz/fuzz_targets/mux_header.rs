//! The multiplexed profile's 9-byte header (`mux::Header::split`): kind and
//! request id, then the body. Whatever splits must put back together into
//! the same bytes; anything shorter than a header or of an unknown kind is
//! `Error::Malformed`.
#![no_main]

use enchufe_framing::mux::{Header, HEADER_LEN};
use enchufe_framing::{BytesMut, Error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Header::split(BytesMut::from(data)) {
        Ok((header, body)) => {
            assert_eq!(header.to_bytes()[..], data[..HEADER_LEN]);
            assert_eq!(body[..], data[HEADER_LEN..]);
        }
        Err(Error::Malformed(_)) => {
            assert!(data.len() < HEADER_LEN || !(1..=7).contains(&data[0]));
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
