//! Writes the seed corpora under `fuzz/corpus/TARGET/`: a few valid inputs
//! per target, made with enchufe's own encoders, so the fuzzer starts from
//! real messages instead of finding the formats byte by byte. Files named
//! `regression_*` are inputs that once failed, kept by hand.
//!
//! ```text
//! cd fuzz && cargo run --example seeds
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use enchufe_framing::mux::{ErrorCode, Header, Hello, Kind};
use enchufe_framing::{Bytes, Encode, Json, MsgPack, Postcard};
use enchufe_fuzz::{Sample, Shape, Tree};

fn sample() -> Sample {
    Sample {
        name: "ñandú 🦀".into(),
        id: u64::MAX,
        small: -7,
        ratio: 9.141592653589793,
        flag: true,
        tags: vec!["a".into(), String::new()],
        scores: BTreeMap::from([("x".to_string(), -1), ("y".to_string(), 1 << 30)]),
        shape: Some(Shape::Circle { r: 0.5 }),
        raw: vec![0, 1, 255],
        pair: (443, 'ñ'),
        wide: i128::MIN,
    }
}

fn tree(depth: usize) -> Tree {
    Tree {
        label: format!("n{depth}"),
        children: (0..depth.min(2)).map(|_| tree(depth - 1)).collect(),
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn mux_frame(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
    let mut payload = Header { kind, id }.to_bytes().to_vec();
    payload.extend_from_slice(body);
    payload
}

/// A read script for `FuzzIo`: `bytes` handed over in chunks of `chunk`.
fn script(bytes: &[u8], chunk: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in bytes.chunks(usize::from(chunk)) {
        out.push(chunk - 1);
        out.extend_from_slice(piece);
    }
    out
}

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let plain_stream = [frame(b"hola"), frame(b""), frame("ñandú".as_bytes())].concat();
    // frame_header: limit byte (x4), then chunk scripts.
    write(
        "frame_header",
        "three_frames",
        [&[64][..], &script(&plain_stream, 3)].concat(),
    );
    write(
        "frame_header",
        "too_large",
        [&[1][..], &script(&frame(&[7; 9]), 5)].concat(),
    );
    write(
        "frame_header",
        "cut",
        [&[16][..], &script(&frame(b"hola")[..6], 2)].concat(),
    );

    let request = mux_frame(Kind::Request, 1, b"hola");
    let error = mux_frame(Kind::Error, 2, &ErrorCode::Busy.body("busy"));
    write("mux_header", "request", &request);
    write("mux_header", "cancel", mux_frame(Kind::Cancel, 9, b""));
    write("classify", "request", &request);
    write("classify", "error", &error);
    write("classify", "push", mux_frame(Kind::Push, 0, b"hi"));

    let hello = Hello::new("nodo-1").encode().unwrap();
    write("hello", "client", &hello);
    write("hello", "peer", Hello::peer("ñandú").encode().unwrap());

    write("message_text", "ascii", "hola");
    write("message_text", "utf8", "ñandú 🦀");
    write("message_text", "cut", &"ñ".as_bytes()[..1]);

    let enc = |m: Result<Bytes, _>| -> Bytes { m.unwrap() };
    write("message_json", "sample", enc(Json(sample()).encode()));
    write("message_json", "tree", enc(Json(tree(3)).encode()));
    write("message_msgpack", "sample", enc(MsgPack(sample()).encode()));
    write("message_msgpack", "tree", enc(MsgPack(tree(3)).encode()));
    write(
        "message_postcard",
        "sample",
        enc(Postcard(sample()).encode()),
    );
    let mut plain = sample();
    plain.shape = Some(Shape::Pair(-1, 2));
    write("message_postcard", "pair", enc(Postcard(plain).encode()));
    write("message_postcard", "tree", enc(Postcard(tree(3)).encode()));

    // wire_e2e: mode (bit 0: multiplexed; role in bits 1-2), limit
    // (16 << n), writes (size 1 << n in bits 0-3, Pending once in n + 1
    // calls in bits 4-7).
    write(
        "wire_e2e",
        "plain_echo",
        [&[0, 6, 0x23][..], &script(&plain_stream, 5)].concat(),
    );
    let mux_stream = [
        frame(&hello),
        frame(&request),
        frame(&mux_frame(Kind::Notify, 0, b"n")),
        frame(&mux_frame(Kind::Cancel, 1, b"")),
    ]
    .concat();
    write(
        "wire_e2e",
        "mux_server",
        [&[1, 6, 0x47][..], &script(&mux_stream, 7)].concat(),
    );
    // A 70,000-byte frame (past LARGE_FRAME), its body as fill blocks.
    let large = [
        &[0u8, 13, 0x1f][..],
        &script(&70_000u32.to_be_bytes(), 4),
        &[0xef, 0x61, 0xe1, 0x62],
    ]
    .concat();
    write("wire_e2e", "plain_large", &large);
    // The same over an I/O with vectored writes (bit 7 of byte 1).
    let mut vectored = large.clone();
    vectored[1] |= 0x80;
    write("wire_e2e", "plain_large_vectored", vectored);
    // Streams on (bit 3; stream limit 2 x 64 B): a 100-byte frame is
    // streamed, the small ones around it are not.
    let streamed = [frame(b"hola"), frame(&[7; 100]), frame(b"fin")].concat();
    write(
        "wire_e2e",
        "plain_stream",
        [&[0x08, 2, 0x35][..], &script(&streamed, 9)].concat(),
    );

    // server_e2e: mode (bit 0: multiplexed), then write scripts.
    write(
        "server_e2e",
        "plain",
        [&[0][..], &script(&plain_stream, 6)].concat(),
    );
    write(
        "server_e2e",
        "plain_too_large",
        [&[0][..], &script(&frame(&[1; 1025]), 64)].concat(),
    );
    write(
        "server_e2e",
        "mux",
        [&[1][..], &script(&mux_stream, 9)].concat(),
    );

    // http_head: head limit byte (x4 + 16), header count byte, chunk scripts.
    let http = |name: &str, limits: [u8; 2], stream: &[u8], chunk: u8| {
        write(
            "http_head",
            name,
            [&limits[..], &script(stream, chunk)].concat(),
        );
    };
    http(
        "pipelined",
        [255, 15],
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b?q=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        7,
    );
    http(
        "bare_lf",
        [255, 15],
        b"GET / HTTP/1.1\nHost: x\nAccept: */*\n\n",
        3,
    );
    let big = [
        &b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "[..],
        &[b'a'; 64],
        b"\r\n\r\n",
    ]
    .concat();
    http("too_large", [4, 15], &big, 20);
    let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
    http("too_many", [255, 1], many, 64);
    http(
        "garbage",
        [255, 15],
        b"\x16\x03\x01\x02\x00hello\r\n\r\n",
        5,
    );
}
