//! What a multiplexed frame means to each role (`session::classify`),
//! including an error reply's body (`ErrorCode::parse`): never a panic, and
//! a violation is a description, not a crash.
#![no_main]

use enchufe_engine::session::{classify, Inbound, Role};
use enchufe_framing::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for role in [Role::Client, Role::Server, Role::Peer] {
        if let Ok(Inbound::Reply {
            outcome: Err((code, message)),
            ..
        }) = classify(BytesMut::from(data), role)
        {
            // What the code says survives a round trip through its byte.
            let body = code.body(&message);
            assert_eq!(
                enchufe_framing::mux::ErrorCode::parse(&body),
                (code, message)
            );
        }
    }
});
