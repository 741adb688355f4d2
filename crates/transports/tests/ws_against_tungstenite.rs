//! `WsIo`'s decoder against tungstenite's (a trusted implementation), on
//! generated streams of client frames: well-formed and broken ones (reserved
//! bits and opcodes, unmasked, fragments out of order, long or fragmented
//! control frames, bad close frames, text that is not UTF-8, messages over
//! the limit), fed in chunks, possibly cut inside the last frame. Both must
//! hand up the same messages and end the same way.

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use enchufe_transports::ws::{Error, WsIo};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A close frame, or the input ran out (inside a frame or not).
    Ended,
    /// RFC 6455 broken: close code 1002.
    Protocol,
    /// Text not UTF-8: 1007.
    Utf8,
    /// Over the limit: 1009.
    TooBig,
}

/// One generated frame.
#[derive(Debug, Clone)]
struct Spec {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    masked: bool,
    rsv: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    let opcode = prop_oneof![
        6 => Just(0x2u8), 4 => Just(0x1), 5 => Just(0x0), 2 => Just(0x9),
        1 => Just(0xA), 1 => Just(0x8), 1 => Just(0x3), 1 => Just(0xB),
    ];
    let payload = prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..40),
        // UTF-8 text, often cut inside a character by the generator's
        // fragments
        4 => "\\PC{0,20}".prop_map(String::into_bytes),
        2 => proptest::collection::vec(any::<u8>(), 100..300),
        // a close frame's payload: a code (allowed or not) and a reason
        2 => (prop_oneof![Just(1000u16), Just(1001), Just(1005), Just(3000), Just(999), Just(4999), any::<u16>()],
              "\\PC{0,5}", any::<bool>())
            .prop_map(|(code, reason, bad)| {
                let mut p = code.to_be_bytes().to_vec();
                p.extend(reason.into_bytes());
                if bad { p.push(0xff); }
                p
            }),
    ];
    (
        prop::bool::weighted(0.7), // FIN: fragments, but mostly whole frames
        opcode,
        payload,
        prop::bool::weighted(0.97),
        prop::bool::weighted(0.02),
    )
        .prop_map(|(fin, opcode, payload, masked, rsv)| Spec {
            fin,
            opcode,
            payload,
            masked,
            rsv,
        })
}

fn encode(spec: &Spec, mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![u8::from(spec.fin) << 7 | u8::from(spec.rsv) << 6 | spec.opcode];
    let len = spec.payload.len();
    let m = u8::from(spec.masked) << 7;
    if len < 126 {
        out.push(m | len as u8);
    } else {
        out.push(m | 126);
        out.extend((len as u16).to_be_bytes());
    }
    if spec.masked {
        out.extend(mask);
        out.extend(
            spec.payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4]),
        );
    } else {
        out.extend(&spec.payload);
    }
    out
}

/// tungstenite's server end reading `input`.
fn reference(input: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    struct Pipe(Cursor<Vec<u8>>);
    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            Read::read(&mut self.0, buf)
        }
    }
    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let mut ws = WebSocket::from_raw_socket(
        Pipe(Cursor::new(input.to_vec())),
        Role::Server,
        Some(config),
    );
    let mut messages = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Binary(data)) => messages.push(data.to_vec()),
            Ok(Message::Text(text)) => messages.push(text.as_bytes().to_vec()),
            // tungstenite reports a close with a disallowed code as this
            // one (its answer); WsIo reports the protocol error.
            Ok(Message::Close(Some(frame)))
                if frame.code == CloseCode::Protocol && frame.reason == "Protocol violation" =>
            {
                return (messages, End::Protocol)
            }
            Ok(Message::Close(_)) => return (messages, End::Ended),
            Ok(_) => {}
            Err(WsError::Protocol(e)) if e.to_string().contains("closing handshake") => {
                return (messages, End::Ended)
            }
            Err(WsError::Protocol(_)) => return (messages, End::Protocol),
            Err(WsError::Utf8) => return (messages, End::Utf8),
            Err(WsError::Capacity(_)) => return (messages, End::TooBig),
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                return (messages, End::Ended)
            }
            Err(e) => panic!("unexpected reference error {e:?}"),
        }
    }
}

/// `WsIo` reading `input`, written to it in chunks of `chunk` bytes.
fn ours(input: &[u8], max: usize, chunk: usize) -> (Vec<Vec<u8>>, End) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let (server, mut client) = tokio::io::duplex(1 << 20);
        let mut server = WsIo::new(server, max, Some(Duration::from_secs(30)));
        let input = input.to_vec();
        let writer = async move {
            for piece in input.chunks(chunk.max(1)) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.shutdown().await.unwrap();
            // Kept open (pongs go here) until the reader is done.
            std::future::pending::<()>().await;
        };
        let reader = async {
            let mut out = Vec::new();
            let mut buf = [0u8; 1024];
            let end = loop {
                match server.read(&mut buf).await {
                    Ok(0) => break End::Ended,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break End::Ended,
                    Err(e) => {
                        let ws = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
                        break match ws.and_then(Error::close_code) {
                            Some(1002) => End::Protocol,
                            Some(1007) => End::Utf8,
                            // Over the limit: the framing layer's to report
                            // (the header declaring the size is out already).
                            None if e.kind() == io::ErrorKind::InvalidData => End::TooBig,
                            _ => panic!("unexpected error {e:?}"),
                        };
                    }
                }
            };
            // Split the output into frames; a header over the limit is the
            // refusal of an oversize message.
            let mut messages = Vec::new();
            let mut rest = &out[..];
            while rest.len() >= 4 {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                if len > max {
                    return (messages, End::TooBig);
                }
                messages.push(rest[4..4 + len].to_vec());
                rest = &rest[4 + len..];
            }
            assert!(rest.is_empty(), "a frame cut short");
            (messages, end)
        };
        tokio::select! {
            result = reader => result,
            () = writer => unreachable!(),
        }
    })
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2_000;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x7773_7773_7773);
    }
    config.failure_persistence = None;
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ws_io_decodes_as_tungstenite_does(
        frames in proptest::collection::vec(spec(), 1..12),
        mask in any::<[u8; 4]>(),
        max in 126usize..400,
        chunk in 1usize..64,
        cut in any::<Option<prop::sample::Index>>(),
    ) {
        let mut input: Vec<u8> = frames.iter().flat_map(|f| encode(f, mask)).collect();
        if let Some(cut) = cut {
            input.truncate(cut.index(input.len() + 1));
        }
        let (want, want_end) = reference(&input, max);
        let (got, got_end) = ours(&input, max, chunk);
        prop_assert_eq!(&got, &want);
        // WsIo refuses an oversize message on its header, tungstenite when
        // the frame is all there: a stream cut inside it differs there only.
        let cut_short = cut.is_some() && want_end == End::Ended && got_end == End::TooBig;
        prop_assert!(got_end == want_end || cut_short, "ours {:?}, tungstenite {:?}", got_end, want_end);
    }
}
