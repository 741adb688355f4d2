//! The multiplexed profile's hello (`mux::Hello::decode`): magic, version,
//! flags, node id. A hello that decodes must encode and decode to itself;
//! anything else is `BadHello` or `VersionMismatch`.
#![no_main]

use enchufe_framing::mux::Hello;
use enchufe_framing::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Hello::decode(data) {
        Ok(hello) => {
            let bytes = hello.encode().expect("a decoded node id fits");
            assert_eq!(Hello::decode(&bytes).expect("re-encoded hello"), hello);
        }
        Err(Error::BadHello | Error::VersionMismatch { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
