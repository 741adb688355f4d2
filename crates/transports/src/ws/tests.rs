//! Byte-level tests of the upgrade and of [`WsIo`] against tungstenite as the client.

use super::frame::{
    put_header, unmask, unmask_at, DIRECT, MAX_CONTROL, READ_CHUNK, STREAM_CHUNK, WRITE_BUDGET,
};
use super::handshake::{respond, Answer};
use super::*;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Runs a test body on paused time, failing it if it would hang (time
/// jumps to the limit as soon as every task waits).
async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(600), body)
        .await
        .expect("the test hung")
}

/// A WebSocket pair over an in-memory pipe, the server end as `WsIo`.
async fn pair(max: usize) -> (WsIo<DuplexStream>, WebSocketStream<DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = WsIo::new(a, max, Some(Duration::from_secs(30)));
    let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    (server, client)
}

/// A client frame as bytes: FIN as given, masked with a fixed mask.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = BytesMut::new();
    put_header(&mut out, opcode, payload.len());
    out[0] = (out[0] & 0x7f) | if fin { 0x80 } else { 0 };
    out[1] |= 0x80;
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
    out.to_vec()
}

/// The close frame the client reads next, skipping everything else.
async fn close_code_seen(client: &mut WebSocketStream<DuplexStream>) -> Option<u16> {
    while let Some(msg) = client.next().await {
        if let Ok(Message::Close(frame)) = msg {
            return frame.map(|f: CloseFrame| u16::from(f.code));
        }
    }
    None
}

#[tokio::test(start_paused = true)]
async fn messages_become_frames_and_back() {
    bounded(async {
        let (mut server, mut client) = pair(1024).await;
        client.send(Message::binary(&b"hola"[..])).await.unwrap();
        client.send(Message::text("ñ")).await.unwrap();
        let mut got = [0u8; 14];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\0\0\0\x04hola\0\0\0\x02\xc3\xb1");
        // Written in odd pieces, sent as one message per frame.
        for piece in [&b"\0\0"[..], b"\0\x03ab", b"c\0\0\0\0"] {
            server.write_all(piece).await.unwrap();
        }
        server.flush().await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(&b"abc"[..])
        );
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(&b""[..])
        );
        // Shutdown sends a close (going away); the client's close ends our
        // reads.
        server.shutdown().await.unwrap();
        assert_eq!(close_code_seen(&mut client).await, Some(1001));
        drop(client);
        assert_eq!(server.read(&mut got).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_fragmented_message_is_one_frame_and_pings_between_are_answered() {
    bounded(async {
        let (mut server, mut client) = pair(1024).await;
        let mut raw = Vec::new();
        raw.extend(frame(false, 0x1, "ña".as_bytes()));
        raw.extend(frame(true, 0x9, b"p"));
        raw.extend(frame(false, 0x0, b"nd"));
        raw.extend(frame(true, 0x0, "ú".as_bytes()));
        client.get_mut().write_all(&raw).await.unwrap();
        let mut got = vec![0u8; 4 + "ñandú".len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[4..], "ñandú".as_bytes());
        assert_eq!(&got[..4], &(got.len() as u32 - 4).to_be_bytes());
        server.flush().await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Pong(Bytes::from_static(b"p"))
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn large_fragments_join_intact() {
    bounded(async {
        let (a, mut client) = tokio::io::duplex(1 << 16);
        let mut server = WsIo::new(a, 1 << 20, None);
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut raw = Vec::new();
        for (fin, opcode, part) in [(false, 0x2, &body[..70_000]), (true, 0x0, &body[70_000..])] {
            let mut out = BytesMut::new();
            put_header(&mut out, opcode, part.len());
            out[0] = (out[0] & 0x7f) | if fin { 0x80 } else { 0 };
            out[1] |= 0x80;
            out.extend_from_slice(&[9, 8, 7, 6]);
            let start = out.len();
            out.extend_from_slice(part);
            unmask(&mut out[start..], [9, 8, 7, 6]);
            raw.extend_from_slice(&out);
        }
        let mut got = vec![0u8; 4 + body.len()];
        let (written, read) = tokio::join!(client.write_all(&raw), server.read_exact(&mut got));
        written.unwrap();
        read.unwrap();
        assert_eq!(&got[..4], &(body.len() as u32).to_be_bytes());
        assert!(got[4..] == body[..]);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn every_message_already_read_comes_out_of_one_read() {
    bounded(async {
        let (mut server, mut client) = pair(1024).await;
        for i in 0..20u8 {
            client.feed(Message::binary(vec![i; 60])).await.unwrap();
        }
        client.flush().await.unwrap();
        // One read of the socket: all twenty messages, in one call.
        let mut buf = [0u8; 8 * 1024];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(n, 20 * 64);
        // Replies are held until the flush, then leave together.
        for i in 0..20u8 {
            server.write_all(&[0, 0, 0, 1, i]).await.unwrap();
        }
        assert!(futures::FutureExt::now_or_never(client.next()).is_none());
        assert_eq!(server.out.len(), 20 * 3);
        server.flush().await.unwrap();
        for i in 0..20u8 {
            assert_eq!(
                client.next().await.unwrap().unwrap(),
                Message::binary(vec![i])
            );
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_oversize_message_reads_as_an_oversize_header_and_closes_1009() {
    bounded(async {
        let (mut server, mut client) = pair(8).await;
        client.send(Message::binary(vec![7u8; 9])).await.unwrap();
        let mut header = [0u8; 4];
        server.read_exact(&mut header).await.unwrap();
        assert_eq!(u32::from_be_bytes(header), 9);
        // The driver fails on the header and flushes before it drops.
        server.flush().await.unwrap();
        assert_eq!(close_code_seen(&mut client).await, Some(1009));
        // Fragments add up to the limit too.
        let (mut server, mut client) = pair(8).await;
        let mut raw = frame(false, 0x2, &[1; 5]);
        raw.extend(frame(true, 0x0, &[1; 5]));
        client.get_mut().write_all(&raw).await.unwrap();
        server.read_exact(&mut header).await.unwrap();
        assert_eq!(u32::from_be_bytes(header), 10);
        server.flush().await.unwrap();
        assert_eq!(close_code_seen(&mut client).await, Some(1009));
    })
    .await;
}

/// Reads until an error, which it returns.
async fn read_error(server: &mut WsIo<DuplexStream>) -> io::Error {
    let mut buf = [0u8; 64];
    loop {
        match server.read(&mut buf).await {
            Ok(0) => panic!("EOF instead of an error"),
            Ok(_) => continue,
            Err(e) => return e,
        }
    }
}

fn ws_error(e: &io::Error) -> &Error {
    e.get_ref().and_then(|e| e.downcast_ref::<Error>()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_closed_with_its_code() {
    bounded(async {
        let cases: [(Vec<u8>, u16); 7] = [
            (frame(true, 0x1, b"\xff\xfe"), 1007), // text not UTF-8
            (
                [frame(false, 0x1, b"\xc3"), frame(true, 0x0, b"(")].concat(),
                1007,
            ),
            (frame(true, 0x8, b"\x03\xe8\xff"), 1007), // close reason not UTF-8
            (b"\x82\x01x".to_vec(), 1002),             // not masked
            (frame(true, 0x3, b""), 1002),             // reserved opcode
            (frame(true, 0x0, b"x"), 1002),            // continuation of nothing
            (frame(false, 0x9, b""), 1002),            // fragmented ping
        ];
        for (raw, code) in cases {
            let (mut server, mut client) = pair(1024).await;
            client.get_mut().write_all(&raw).await.unwrap();
            let e = read_error(&mut server).await;
            assert_eq!(ws_error(&e).close_code(), Some(code), "{e}");
            server.flush().await.unwrap();
            assert_eq!(close_code_seen(&mut client).await, Some(code));
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_peers_close_ends_reads_and_is_echoed_at_shutdown() {
    bounded(async {
        let (mut server, mut client) = pair(1024).await;
        client.send(Message::binary(&b"last"[..])).await.unwrap();
        client
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Library(4000),
                reason: "bye".into(),
            })))
            .await
            .unwrap();
        let mut all = Vec::new();
        server.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"\0\0\0\x04last");
        server.write_all(b"\0\0\0\x01r").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(&b"r"[..])
        );
        assert_eq!(close_code_seen(&mut client).await, Some(4000));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_message_is_closed_at_its_deadline() {
    bounded(async {
        let (mut server, mut client) = pair(1024).await;
        server.set_message_timeout(Some(Duration::from_secs(5)));
        // A first fragment, then pings only: the message never completes.
        client
            .get_mut()
            .write_all(&frame(false, 0x2, b"ab"))
            .await
            .unwrap();
        let pinger = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                client
                    .get_mut()
                    .write_all(&frame(true, 0x9, b""))
                    .await
                    .unwrap();
            }
        };
        let started = tokio::time::Instant::now();
        let e = tokio::select! {
            e = read_error(&mut server) => e,
            () = pinger => unreachable!(),
        };
        assert!(matches!(ws_error(&e), Error::MessageTimeout(_)), "{e}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(7));
        server.flush().await.unwrap();
        assert_eq!(close_code_seen(&mut client).await, Some(1008));
        // A frame whose bytes trickle is held to the same deadline.
        let (mut server, mut client) = pair(1024).await;
        server.set_message_timeout(Some(Duration::from_secs(5)));
        let raw = frame(true, 0x2, &[9; 100]);
        client.get_mut().write_all(&raw[..50]).await.unwrap();
        let e = read_error(&mut server).await;
        assert!(matches!(ws_error(&e), Error::MessageTimeout(_)), "{e}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_pings_and_never_reads_is_held_to_a_budget() {
    bounded(async {
        // The pipe holds 64 KiB each way; the client writes pings and never
        // reads its pongs.
        let (a, mut client) = tokio::io::duplex(1 << 16);
        let mut server = WsIo::new(a, 1024, None);
        let pings = frame(true, 0x9, &[b'p'; 125]).repeat(10_000); // 1.3 MB
        let writer = tokio::time::timeout(Duration::from_secs(10), client.write_all(&pings));
        let reader = async {
            let mut buf = [0u8; 64];
            // No data ever comes: the read waits (the driver's deadlines
            // end such a connection).
            let read = server.read(&mut buf).await;
            unreachable!("a read returned: {read:?}");
        };
        tokio::select! {
            written = writer => assert!(written.is_err(), "every ping was taken {written:?}"),
            () = reader => {}
        }
        // What the server holds for this peer: its output budget and one
        // pong, besides what the pipe holds.
        assert!(
            server.out.len() <= WRITE_BUDGET + 2 + MAX_CONTROL,
            "{}",
            server.out.len()
        );
        assert!(server.rbuf.capacity() <= 2 * READ_CHUNK);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn large_bodies_go_out_between_small_frames_intact() {
    bounded(async {
        let (mut server, mut client) = pair(1 << 20).await;
        let large: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut frames = Vec::new();
        for body in [&b"a"[..], &large, b"b", &large[..DIRECT], b""] {
            frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frames.extend_from_slice(body);
        }
        let (written, got) = tokio::join!(
            async {
                server.write_all(&frames).await?;
                server.flush().await
            },
            async {
                let mut got = Vec::new();
                for _ in 0..5 {
                    got.push(client.next().await.unwrap().unwrap().into_data());
                }
                got
            }
        );
        written.unwrap();
        assert_eq!(got[0], &b"a"[..]);
        assert_eq!(got[1], &large[..]);
        assert_eq!(got[2], &b"b"[..]);
        assert_eq!(got[3], &large[..DIRECT]);
        assert!(got[4].is_empty());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_connection_holds_no_buffers() {
    bounded(async {
        let (mut server, mut client) = pair(1 << 20).await;
        // A large message, read and answered; then the client goes quiet.
        let mut got = vec![0u8; 4 + 300_000];
        let (sent, read) = tokio::join!(
            client.send(Message::binary(vec![1u8; 300_000])),
            server.read_exact(&mut got)
        );
        sent.unwrap();
        read.unwrap();
        let (echoed, reply) = tokio::join!(
            async {
                server.write_all(&got).await?;
                server.flush().await
            },
            client.next()
        );
        echoed.unwrap();
        assert_eq!(reply.unwrap().unwrap().len(), 300_000);
        let mut buf = [0u8; 16];
        let waiting = futures::FutureExt::now_or_never(server.read(&mut buf));
        assert!(waiting.is_none());
        assert_eq!((server.rbuf.capacity(), server.out.capacity()), (0, 0));
        // What stays is the struct itself, boxed once by the server.
        assert!(std::mem::size_of::<WsIo<tokio::net::TcpStream>>() <= 512);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_large_binary_message_streams_through_a_small_buffer() {
    bounded(async {
        let (mut server, mut client) = pair(1 << 20).await;
        let len = 700_000;
        // Bytes that differ at every offset, so a mask applied at the wrong
        // phase anywhere shows.
        let sent: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let message = sent.clone();
        let sending = tokio::spawn(async move {
            client.send(Message::binary(message)).await.unwrap();
            client
        });
        let mut header = [0u8; 4];
        server.read_exact(&mut header).await.unwrap();
        assert_eq!(u32::from_be_bytes(header) as usize, len);
        let mut got = vec![0u8; len];
        let mut most = 0;
        let mut at = 0;
        while at < len {
            // Odd sizes, to move the mask's phase between reads.
            let end = (at + 4_097).min(len);
            let n = server.read(&mut got[at..end]).await.unwrap();
            assert!(n > 0, "EOF inside the message");
            at += n;
            most = most.max(server.rbuf.capacity());
        }
        assert!(got == sent, "the payload changed on its way");
        // The message passed through; it was never gathered here.
        assert!(most <= 2 * STREAM_CHUNK, "{most}");
        // A text message of the same size is still checked whole first.
        let mut client = sending.await.unwrap();
        let text = "a".repeat(len);
        let sending = tokio::spawn(async move {
            client.send(Message::text(text)).await.unwrap();
            client
        });
        server.read_exact(&mut header).await.unwrap();
        assert!(server.rbuf.capacity() >= len, "{}", server.rbuf.capacity());
        let mut rest = vec![0u8; len];
        server.read_exact(&mut rest).await.unwrap();
        assert!(rest.iter().all(|b| *b == b'a'));
        let _client = sending.await.unwrap();
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_streamed_message_cut_short_is_an_unexpected_eof_and_its_deadline_holds() {
    bounded(async {
        let (mut server, mut client) = pair(1 << 20).await;
        server.set_message_timeout(Some(Duration::from_secs(5)));
        let raw = frame(true, 0x2, &vec![5u8; 100_000]);
        client.get_mut().write_all(&raw[..50_000]).await.unwrap();
        // Its first bytes come out; the rest never arrives in time.
        let mut got = vec![0u8; 4 + 1_000];
        server.read_exact(&mut got).await.unwrap();
        let e = read_error(&mut server).await;
        assert!(matches!(ws_error(&e), Error::MessageTimeout(_)), "{e}");
        server.flush().await.unwrap();
        assert_eq!(close_code_seen(&mut client).await, Some(1008));
        // The socket closing in the middle of one is not a clean end.
        let (mut server, mut client) = pair(1 << 20).await;
        client.get_mut().write_all(&raw[..50_000]).await.unwrap();
        client.get_mut().shutdown().await.unwrap();
        let mut sink = Vec::new();
        let e = server.read_to_end(&mut sink).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    })
    .await;
}

#[test]
fn unmask_at_continues_a_mask_from_any_phase() {
    let mask = [0xa1, 0xb2, 0xc3, 0xd4];
    let plain: Vec<u8> = (0..40).collect();
    let mut whole = plain.clone();
    unmask(&mut whole, mask);
    for cut in 0..40 {
        let mut parts = plain.clone();
        let (head, tail) = parts.split_at_mut(cut);
        unmask_at(head, mask, 0);
        unmask_at(tail, mask, cut);
        assert_eq!(parts, whole, "cut at {cut}");
    }
}

#[test]
fn unmask_undoes_a_mask_at_any_length() {
    let mask = [0xa1, 0xb2, 0xc3, 0xd4];
    for len in 0..40 {
        let plain: Vec<u8> = (0..len as u8).collect();
        let mut data = plain.clone();
        unmask(&mut data, mask);
        for (i, (m, p)) in data.iter().zip(&plain).enumerate() {
            assert_eq!(*m, p ^ mask[i % 4]);
        }
    }
}

#[test]
fn upgrade_requests() {
    let options = Options::default().page("<p>hi</p>");
    let upgrade = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    assert!(
        matches!(respond(upgrade, &options), Ok(Answer::Upgrade(k)) if k == "dGhlIHNhbXBsZSBub25jZQ==")
    );
    let strict = Options::default().allowed_origins(["http://a.example"]);
    let from = |origin: &str| {
        format!("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: k\r\nOrigin: {origin}\r\n\r\n").into_bytes()
    };
    let no_key = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let cases: [(&[u8], &Options, &str); 8] = [
        (b"GET / HTTP/1.1\r\n\r\n", &options, "page"),
        (b"GET /x HTTP/1.1\r\n\r\n", &options, "not found"),
        (b"POST / HTTP/1.1\r\n\r\n", &options, "bad request"),
        (b"\0\0\0\x04hola\r\n\r\n", &options, "bad request"),
        (&from("http://a.example"), &strict, "upgrade"),
        (&from("http://evil.example"), &strict, "forbidden"),
        (&from("http://evil.example"), &options, "upgrade"),
        (no_key, &options, "bad request"),
    ];
    for (request, options, want) in cases {
        let got = match respond(request, options) {
            Ok(Answer::Upgrade(_)) => "upgrade",
            Ok(Answer::Page(_)) => "page",
            Err(Error::NotFound(_)) => "not found",
            Err(Error::BadRequest(_)) => "bad request",
            Err(Error::Forbidden(_)) => "forbidden",
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(got, want, "{}", String::from_utf8_lossy(request));
    }
}

#[tokio::test(start_paused = true)]
async fn each_protocol_error_names_how_rfc_6455_was_broken() {
    bounded(async {
        let mut reserved_bit = frame(true, 0x2, b"x");
        reserved_bit[0] |= 0x40;
        let cases = [
            (b"\x82\x01x".to_vec(), Violation::Unmasked),
            (frame(true, 0x3, b""), Violation::ReservedOpcode),
            (reserved_bit, Violation::ReservedBit),
            (frame(true, 0x0, b"x"), Violation::FragmentOrder),
            (frame(false, 0x9, b""), Violation::BadControl),
            (frame(true, 0x8, b"\x03"), Violation::ShortClose),
            // 1005 ("no status") may not be sent on the wire.
            (frame(true, 0x8, b"\x03\xed"), Violation::CloseCode),
        ];
        for (raw, violation) in cases {
            let (mut server, mut client) = pair(1024).await;
            client.get_mut().write_all(&raw).await.unwrap();
            let e = read_error(&mut server).await;
            assert!(
                matches!(ws_error(&e), Error::Protocol(v) if *v == violation),
                "{violation:?}: {e}"
            );
        }
    })
    .await;
}

#[test]
fn predicates_tell_bad_input_from_a_socket_that_went_away() {
    let reset = Error::Io(io::ErrorKind::ConnectionReset.into());
    assert!(reset.is_closed() && reset.is_reset() && !reset.is_bad_input());
    let eof = Error::Io(io::ErrorKind::UnexpectedEof.into());
    assert!(eof.is_closed() && !eof.is_reset() && !eof.is_bad_input());
    let bad = [
        Error::Protocol(Violation::Unmasked),
        Error::InvalidUtf8,
        Error::TooLarge { limit: 1 },
        Error::BadRequest("not an upgrade".into()),
        Error::Forbidden("https://elsewhere".into()),
        Error::Timeout(Duration::from_secs(1)),
        Error::MessageTimeout(Duration::from_secs(1)),
    ];
    for e in bad {
        assert!(e.is_bad_input() && !e.is_closed() && !e.is_reset(), "{e}");
    }
    assert!(!Error::NotFound("/nope".into()).is_bad_input());
}
