//! Streamed frame bodies (plain profile): a frame longer than
//! `max_frame_length` and within `max_stream_length` reaches
//! `Handler::handle_stream` in chunks; `Client::send_stream` sends one from
//! any `AsyncRead`. Memory stays bounded by a few chunks on both ends: the
//! 200 MiB test counts every heap byte of this binary (server and client
//! share it) with a counting allocator.

mod common;

use std::alloc::System;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::bounded;
use enchufe::server::{Body, BoxError, Config};
use enchufe::{Client, Connection, Handler, Server, ServerHandle};
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Streams are a plain-profile feature: the client pins it (its default is
/// multiplexed). The servers keep their default (automatic) profile, which
/// serves streams to a plain client.
fn plain() -> enchufe::client::Config {
    enchufe::client::Config::default().profile(enchufe::Profile::Plain)
}

#[global_allocator]
static ALLOC: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Held by the test that reads [`ALLOC`], so its figure is its own.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: u64 = 1 << 20;
/// Streams up to this long are checksummed byte by byte (longer ones are
/// counted: a debug build would spend the test's time summing).
const CHECKED: u64 = 8 * MIB;

/// Answers a streamed message with its length and a checksum of its bytes
/// (reading `read_at_most` of them, leaving the rest unread); an ordinary
/// message with `echo:<msg>`.
struct Sums {
    read_at_most: u64,
    streams: Arc<AtomicU64>,
}

impl Handler for Sums {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, msg: String, _: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(format!("echo:{msg}")))
    }

    async fn handle_stream(
        &self,
        mut body: Body,
        _: &Connection,
    ) -> Result<Option<String>, BoxError> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let len = body.len();
        let (mut n, mut sum) = (0u64, 0u64);
        while n < self.read_at_most {
            let Some(chunk) = body.chunk().await? else {
                break;
            };
            assert!(chunk.len() <= enchufe::framing::STREAM_CHUNK);
            n += chunk.len() as u64;
            if len <= CHECKED {
                sum = chunk
                    .iter()
                    .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
            }
        }
        Ok(Some(format!("{len}:{n}:{sum}")))
    }
}

async fn server(read_at_most: u64) -> (ServerHandle, Arc<AtomicU64>) {
    let streams = Arc::new(AtomicU64::new(0));
    let config = Config::default()
        .max_frame_length(1024)
        .max_stream_length(u64::from(u32::MAX));
    let handle = Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config)
        .serve(Sums {
            read_at_most,
            streams: streams.clone(),
        });
    (handle, streams)
}

/// The bytes the tests stream: a pattern, so a byte out of place shows.
fn pattern(len: u64) -> impl tokio::io::AsyncRead + Unpin + Send {
    Pattern { at: 0 }.take(len)
}

/// Byte `i` of the pattern is `i % 251`; this block repeats it.
static BLOCK: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| (0..251 * 256).map(|i| (i % 251) as u8).collect());

struct Pattern {
    at: u64,
}

impl tokio::io::AsyncRead for Pattern {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let from = (self.at % 251) as usize;
        let n = buf.remaining().min(BLOCK.len() - from);
        buf.put_slice(&BLOCK[from..from + n]);
        self.at += n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

fn checksum(len: u64) -> u64 {
    (0..len).fold(0u64, |s, i| s.wrapping_mul(31).wrapping_add(i % 251))
}

#[tokio::test]
async fn a_message_over_the_frame_limit_streams_to_the_handler_and_the_connection_goes_on() {
    bounded(async {
        let (server, streams) = server(u64::MAX).await;
        let client = Client::connect_with(server.local_addr(), plain())
            .await
            .unwrap();
        assert_eq!(
            client.request::<_, String>("antes").await.unwrap(),
            "echo:antes"
        );
        let len = 3 * MIB + 17;
        client.send_stream(pattern(len), len).await.unwrap();
        let answer: String = client.recv().await.unwrap().unwrap();
        assert_eq!(answer, format!("{len}:{len}:{}", checksum(len)));
        // Frames resume where the stream ended.
        assert_eq!(
            client.request::<_, String>("después").await.unwrap(),
            "echo:después"
        );
        // A small stream (under the frame limit it is an ordinary message).
        client.send_stream(&b"hola"[..], 4).await.unwrap();
        assert_eq!(client.recv::<String>().await.unwrap().unwrap(), "echo:hola");
        assert_eq!(streams.load(Ordering::SeqCst), 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_handler_deadline_counts_from_each_chunk_so_a_slow_upload_is_not_cut() {
    bounded(async {
        let limit = std::time::Duration::from_millis(400);
        let config = Config::default()
            .max_frame_length(1024)
            .max_stream_length(u64::from(u32::MAX))
            .handler_timeout(Some(limit));
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(config)
            .serve(Sums {
                read_at_most: u64::MAX,
                streams: Arc::default(),
            });
        // 8 chunks of 64 KiB, one every 150 ms: the upload takes 3 times
        // the handler's limit, and the handler reads every chunk at once.
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        let chunk = enchufe::framing::STREAM_CHUNK;
        let len = 8 * chunk as u64;
        raw.write_all(&(len as u32).to_be_bytes()).await.unwrap();
        let mut body = pattern(len);
        let mut buf = vec![0u8; chunk];
        for _ in 0..8 {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            body.read_exact(&mut buf).await.unwrap();
            raw.write_all(&buf).await.unwrap();
        }
        let mut head = [0u8; 4];
        raw.read_exact(&mut head).await.expect("answered, not cut");
        let mut answer = vec![0u8; u32::from_be_bytes(head) as usize];
        raw.read_exact(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert_eq!(answer, format!("{len}:{len}:{}", checksum(len)));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn what_the_handler_leaves_unread_is_skipped_before_its_reply() {
    bounded(async {
        let (server, _) = server(100_000).await;
        let client = Client::connect_with(server.local_addr(), plain())
            .await
            .unwrap();
        let len = 2 * MIB;
        client.send_stream(pattern(len), len).await.unwrap();
        let answer: String = client.recv().await.unwrap().unwrap();
        let read: u64 = answer.split(':').nth(1).unwrap().parse().unwrap();
        assert!((100_000..200_000).contains(&read), "{answer}");
        assert_eq!(
            client.request::<_, String>("sigue").await.unwrap(),
            "echo:sigue"
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_stream_cut_short_fails_that_connection_only() {
    bounded(async {
        let (server, _) = server(u64::MAX).await;
        // A raw client declares 1 MiB, sends 1,000 bytes and leaves.
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        raw.write_all(&(MIB as u32).to_be_bytes()).await.unwrap();
        raw.write_all(&[7u8; 1000]).await.unwrap();
        drop(raw);
        // The client's own reader ending early ends its connection, with the
        // reason.
        let client = Client::connect_with(server.local_addr(), plain())
            .await
            .unwrap();
        let err = client.send_stream(&[1u8; 10][..], 5000).await.unwrap_err();
        assert!(err.to_string().contains("short"), "{err}");
        // Others are served.
        let other = Client::connect_with(server.local_addr(), plain())
            .await
            .unwrap();
        assert_eq!(other.request::<_, String>("ok").await.unwrap(), "echo:ok");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn streams_are_refused_unless_turned_on_and_handled() {
    bounded(async {
        // Off by default: over the frame limit is an error, as before.
        let off = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(Config::default().max_frame_length(1024))
            .serve(enchufe::handler_fn(|m: String, _| async move {
                Ok::<_, Infallible>(Some(m))
            }));
        let client = Client::connect_with(off.local_addr(), plain())
            .await
            .unwrap();
        client.send_stream(pattern(4096), 4096).await.unwrap();
        let end = client.recv::<String>().await;
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
        off.shutdown().await;

        // On, but the handler does not take streams: that connection ends.
        let on = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(
                Config::default()
                    .max_frame_length(1024)
                    .max_stream_length(MIB),
            )
            .serve(enchufe::handler_fn(|m: String, _| async move {
                Ok::<_, Infallible>(Some(m))
            }));
        let client = Client::connect_with(on.local_addr(), plain())
            .await
            .unwrap();
        client.send_stream(pattern(4096), 4096).await.unwrap();
        let end = client.recv::<String>().await;
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
        // Over max_stream_length: refused on the header.
        let client = Client::connect_with(on.local_addr(), plain())
            .await
            .unwrap();
        let _ = client.send_stream(pattern(MIB + 1), MIB + 1).await;
        let end = client.recv::<String>().await;
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
        let fresh = Client::connect_with(on.local_addr(), plain())
            .await
            .unwrap();
        assert_eq!(fresh.request::<_, String>("x").await.unwrap(), "x");
        on.shutdown().await;

        // The multiplexed profile does not stream.
        let mux_config = enchufe::server::Config::default().profile(enchufe::Profile::Multiplexed);
        let mux = common::echo_server(mux_config).await;
        let client = Client::connect_with(
            mux.local_addr(),
            enchufe::client::Config::default().profile(enchufe::Profile::Multiplexed),
        )
        .await
        .unwrap();
        let err = client.send_stream(&b"x"[..], 1).await.unwrap_err();
        assert!(
            matches!(err, enchufe::client::Error::Unsupported(_)),
            "{err:?}"
        );
        mux.shutdown().await;
    })
    .await;
}

/// Sending one 200 MiB message peaks under 32 MiB in the
/// sender. Here sender and receiver share the process, so the bound holds
/// for both together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_message_costs_both_ends_under_32_mib() {
    let _serial = MEMORY.lock().await;
    bounded(async {
        let (server, _) = server(u64::MAX).await;
        let client = Client::connect_with(server.local_addr(), plain())
            .await
            .unwrap();
        assert_eq!(
            client.request::<_, String>("warm").await.unwrap(),
            "echo:warm"
        );
        let len = 200 * MIB;
        ALLOC.reset_peak_memory();
        let before = ALLOC.get_peak_memory();
        client.send_stream(pattern(len), len).await.unwrap();
        let answer: String = client.recv().await.unwrap().unwrap();
        let peak = ALLOC.get_peak_memory().saturating_sub(before);
        assert_eq!(answer, format!("{len}:{len}:0"));
        eprintln!(
            "200 MiB streamed: peak heap growth {:.1} MiB",
            peak as f64 / MIB as f64
        );
        assert!(peak < 32 * MIB as usize, "peak {peak} bytes");
        server.shutdown().await;
    })
    .await;
}
