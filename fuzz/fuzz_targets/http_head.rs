//! The HTTP request-head codec (`enchufe_http::RequestHead`, a `Split` for
//! the wire), fed in chunks the input chooses. Whatever the bytes: every
//! head it cuts is one whole head within the limits that `Request::parse`
//! accepts; it never holds more than the head limit while waiting (the
//! wire's memory bound); a failure names its refusal; and the heads are the
//! same as when the whole input arrives in one read.
//!
//! Input: byte 0 sets the head limit (16 to 1,036 bytes), byte 1 the header
//! count (1 to 16); then, repeatedly, a control byte gives the next chunk's
//! size (1 to 64) and that many bytes follow.
#![no_main]

use enchufe_framing::{BytesMut, Split};
use enchufe_fuzz::Script;
use enchufe_http::{Limits, Request, RequestHead};
use libfuzzer_sys::fuzz_target;

/// Feeds `chunks`, taking every head after each; stops at the first error.
fn heads(limits: Limits, chunks: &[&[u8]]) -> (Vec<BytesMut>, bool) {
    let mut codec = RequestHead::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.split(&mut buf, 0) {
                Ok(Some(head)) => {
                    assert!(head.len() <= limits.max_head);
                    assert!(head.ends_with(b"\n"));
                    assert!(Request::parse(&head).is_ok(), "{head:?}");
                    out.push(head);
                }
                Ok(None) => {
                    assert!(buf.len() <= limits.max_head, "{} held", buf.len());
                    break;
                }
                Err(_) => {
                    assert!(codec.refusal().is_some());
                    return (out, true);
                }
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script::new(data);
    let (Some(head), Some(count)) = (script.byte(), script.byte()) else {
        return;
    };
    let limits = Limits::default()
        .max_head(usize::from(head) * 4 + 16)
        .max_headers(usize::from(count) % 16 + 1);
    let mut chunks = Vec::new();
    while let Some(control) = script.byte() {
        chunks.push(script.take(usize::from(control) % 64 + 1));
    }
    let (chunked, _) = heads(limits, &chunks);
    let whole: Vec<u8> = chunks.concat();
    let (at_once, _) = heads(limits, &[&whole]);
    // Parsing lazily (only when a blank line arrives) may refuse later, or
    // not at all before the input ends, but never cuts other heads.
    assert_eq!(chunked, at_once);
});
