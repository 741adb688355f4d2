//! The HTTP request-head codec (`enchufe_http::RequestHead`, a `Split` for
//! the wire), fed in chunks the input chooses. Whatever the bytes: every
//! head it cuts is one whole head within the limits whose grammar
//! `Request::parse` accepts (its rules may still refuse it); it never holds
//! more than the head limit while waiting (the wire's memory bound); a
//! failure names its refusal; and the heads are the same as when the whole
//! input arrives in one read.
//!
//! Then the same bytes go to a whole HTTP connection (the door's `serve`
//! over an in-memory pipe, on a paused clock) whose handler echoes `POST`
//! bodies and leaves others unread: bodies of both framings, chunk sizes,
//! trailers, `100-continue`, the body limit and draining. Whatever the
//! bytes, it ends (no hang), and what it writes is a sequence of whole
//! HTTP/1.1 responses, each framed by its `Content-Length`.
//!
//! Input: byte 0 sets the head limit (16 to 1,036 bytes) and the body limit
//! (0 to 1,020 bytes), byte 1 the header count (1 to 16) and the drain
//! bound; then, repeatedly, a control byte gives the next chunk's size (1
//! to 64) and that many bytes follow.
#![no_main]

use std::time::Duration;

use enchufe_framing::{BytesMut, Split};
use enchufe_fuzz::Script;
use enchufe_http::{door, handler_fn, Config, Limits, Refusal, Request, RequestHead, Response};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
                    // The codec and the request parser agree on the
                    // grammar and the limits; the rules table may still
                    // refuse (two Hosts, say).
                    let parsed = Request::parse(&head);
                    assert!(
                        !matches!(
                            parsed,
                            Err(Refusal::Malformed(_)
                                | Refusal::TooLarge
                                | Refusal::TooManyHeaders)
                        ),
                        "{head:?}: {parsed:?}"
                    );
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

/// Serves `input` on one connection (the client half-closes after it) and
/// returns what the server wrote before it closed.
fn serve(limits: Limits, max_body: u64, drain: u64, input: Vec<u8>) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let echo = handler_fn(|mut request: Request| async move {
            if request.method() == "HEAD" {
                // Its reply has a length and no body: marked for the check.
                return Response::new(200, "unread").header("X-Head", "1");
            }
            if request.method() != "POST" {
                return Response::new(200, "unread");
            }
            match request.body.to_bytes(4096).await {
                Ok(body) => Response::new(200, body),
                Err(_) => Response::new(500, "broken"),
            }
        });
        let config = Config::default()
            .limits(limits)
            .max_body(max_body)
            .drain_bytes(drain);
        let door = door(echo).with_config(config);
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let served = enchufe_server::Door::serve(
            &door,
            Box::pin(ours),
            ([127, 0, 0, 1], 1).into(),
            tokio_util::sync::CancellationToken::new(),
        );
        let server = tokio::spawn(served);
        let client = async {
            // Writes may stop being taken once the server closes.
            let _ = theirs.write_all(&input).await;
            let _ = theirs.shutdown().await;
            let mut out = Vec::new();
            let _ = theirs.read_to_end(&mut out).await;
            out
        };
        // Virtual time: every deadline of the connection is within this.
        let out = tokio::time::timeout(Duration::from_secs(600), client)
            .await
            .expect("the connection ends");
        server.await.expect("serve does not panic");
        out
    })
}

/// Checks that `out` is whole HTTP/1.1 responses, each framed by its
/// `Content-Length` (`100 Continue` has none, a reply to `HEAD`, marked
/// `X-Head` by the handler, has no body).
fn well_formed(mut out: &[u8]) {
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(out).expect("a response head") else {
            panic!("a cut response head: {:?}", String::from_utf8_lossy(out));
        };
        let body = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            });
        let head_only = response.headers.iter().any(|h| h.name == "X-Head");
        match (response.code, body) {
            (Some(100), None) => out = &out[len..],
            (Some(_), Some(_)) if head_only => out = &out[len..],
            (Some(_), Some(n)) => {
                assert!(out.len() >= len + n, "a cut response body");
                out = &out[len + n..];
            }
            other => panic!("{other:?}"),
        }
    }
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
    let out = serve(limits, u64::from(head) * 4, u64::from(count) * 8, whole);
    well_formed(&out);
});
