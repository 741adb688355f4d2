//! Five limits of the server's connection core, each measured from outside:
//! memory counted by a global allocator, handlers counted as they run,
//! answers read off the wire. Each fails in well under 10 s on a core
//! without the limit.
//!
//! 1. `a_client_that_never_reads_costs_at_most_the_byte_budget`: a plain
//!    echo server (default config) and a raw client that sends 40 frames of
//!    8 MiB and never reads. Once the server takes no more, the peak of live
//!    heap bytes since the baseline is at most [`BYTE_BUDGET`] (16 MiB of
//!    outbound bytes not yet in the kernel, counting the writer's buffer, +
//!    the one 8 MiB request in hand) + 1 MiB [`SLACK`].
//!    A queue counted in frames, not bytes, takes all 40 (320 MiB).
//! 2. `declared_lengths_reserve_nothing_before_bytes_arrive`: 200
//!    connections each send a header declaring 8 MiB - 1 and 10 body bytes,
//!    and stay open. Once the server has read every byte (its sockets'
//!    receive queues are empty), the heap has grown by less than
//!    200 x 64 KiB = 12.5 MiB (a codec that reserves the declared length on
//!    the header grows it by 1.6 GiB).
//! 3. `one_way_messages_count_against_max_in_flight`: multiplexed,
//!    `max_in_flight(4)`, `BusyPolicy::Refuse`; 100 notify frames whose
//!    handlers wait on a gate, then a request. At most 4 handlers ever run at
//!    once, and the connection answers a request afterwards. Notifies over
//!    the limit may run later (after the gate opens) or be dropped: the test
//!    asserts only the concurrency bound.
//! 4. `a_cancel_is_read_even_at_the_in_flight_limit`: multiplexed,
//!    `max_in_flight(2)`, `BusyPolicy::Wait`; requests 1 and 2 block forever,
//!    then cancel 1, cancel 2 and request 3 "ping": request 3 is answered
//!    within 3 s and both cancelled handlers are gone (a reader that stops
//!    at the limit never reads the cancels).
//! 5. `requests_unread_at_shutdown_get_shutting_down_errors`: multiplexed,
//!    `max_in_flight(1)`, `BusyPolicy::Wait`; request 1 waits on a gate,
//!    2..=5 queue behind it unread; shutdown begins, then the gate opens.
//!    Before the connection closes, every id 1..=5 gets exactly one answer:
//!    1 a response, 2..=5 a response or an error with code 6 (shutting down).
//!
//! No plain-profile variant of 5: the plain wire has no error frame, so a
//! request left unread at shutdown can only be answered or dropped with the
//! connection, and "answered" would mean handling new work after shutdown
//! began, which the protocol does not ask for.
//!
//! Memory is measured with a counting global allocator (`peakmem-alloc`;
//! the workspace forbids the `unsafe` a hand-written one needs). Allocations
//! are process-wide, so the two tests that read it hold [`MEMORY`] and run
//! one at a time; the others allocate only KiBs.
//! Run with `cargo test --test limits_connection_core`.

mod common;

use std::alloc::System;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::mux_peer::MuxPeer;
use common::{eventually, serve};
use enchufe::framing::mux::{ErrorCode, Kind};
use enchufe::framing::Transport;
use enchufe::{handler_fn, Connection, Handler, Server};
use enchufe_server::{BusyPolicy, Config, Profile};
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Counts every heap byte of this test binary: the server and the test's
/// clients share the process, so tests measure deltas from a baseline taken
/// after their clients' own buffers exist.
#[global_allocator]
static ALLOC: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Held by the tests that read [`ALLOC`], so their figures are their own.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every test body runs within this, so a bug is a failure, never a hang.
const TEST_LIMIT: Duration = Duration::from_secs(10);

const MIB: usize = 1 << 20;
/// The default `max_frame_length`: the largest frame a client may send.
const FRAME: usize = 8 * MIB;
/// What a client that never reads may cost: outbound bytes not yet handed
/// to the kernel (queued, or in the writer's buffer) up to 16 MiB, plus the
/// one request frame the connection has in hand.
const BYTE_BUDGET: usize = 16 * MIB + FRAME;
/// Room for what is not frames: a connection's tasks, state and small
/// buffers (tens of KiB), so the check is not decided by bookkeeping.
const SLACK: usize = MIB;

async fn within<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB as f64
}

// ---------------------------------------------------------------------------
// 1. Byte budget

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_costs_at_most_the_byte_budget() {
    const FRAMES: usize = 40; // 320 MiB offered

    let _serial = MEMORY.lock().await;
    within(async {
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = handled.clone();
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(handler_fn(
            move |msg: Bytes, _conn| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(Some(msg))
                }
            },
        ));

        // One frame, allocated once and written again and again, so the
        // client's heap stays constant and the baseline excludes it.
        let mut frame = BytesMut::with_capacity(4 + FRAME);
        frame.put_u32(FRAME as u32);
        frame.resize(4 + FRAME, b'x');
        let frame = frame.freeze();
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        ALLOC.reset_peak_memory();

        let client = tokio::spawn(async move {
            // Writes block once the server stops reading; errors end them.
            let _ = tokio::time::timeout(TEST_LIMIT, async {
                for _ in 0..FRAMES {
                    if stream.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                // Keep the connection open, unread, until the test ends.
                std::future::pending::<()>().await;
            })
            .await;
        });

        // Nothing tells when a server has stopped taking frames, so wait
        // until the count it handled holds still over a quiet interval.
        let accepted = tokio::time::timeout(Duration::from_secs(8), async {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let now = handled.load(Ordering::SeqCst);
                if now > 0 && now == last {
                    return now;
                }
                last = now;
            }
        })
        .await
        .expect("the count of frames the server took never settled");
        let peak = ALLOC.get_peak_memory();
        println!(
            "server took {accepted} frames of 8 MiB; peak heap {:.1} MiB ({peak} B)",
            mib(peak)
        );

        client.abort();
        let _ = client.await;
        server.shutdown().await;

        assert!(
            peak <= BYTE_BUDGET + SLACK,
            "a client that never reads cost the server {:.1} MiB of heap at peak \
             (it took {accepted} frames of 8 MiB); the budget is {:.0} MiB + {:.0} MiB slack",
            mib(peak),
            mib(BYTE_BUDGET),
            mib(SLACK)
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// 2. Reserve from the declared length

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_lengths_reserve_nothing_before_bytes_arrive() {
    const CONNS: usize = 200;
    const PER_CONN: usize = 64 * 1024;

    let _serial = MEMORY.lock().await;
    within(async {
        let server = common::echo_server(Config::default()).await;
        let addr = server.local_addr();
        let mut partial = Vec::with_capacity(4 + 10);
        partial.extend_from_slice(&((FRAME - 1) as u32).to_be_bytes());
        partial.extend_from_slice(&[b'x'; 10]);
        let mut clients = Vec::with_capacity(CONNS);
        ALLOC.reset_peak_memory();

        for _ in 0..CONNS {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&partial).await.unwrap();
            clients.push(stream);
        }
        // The server has read every byte once none waits in its sockets'
        // receive queues; then a round trip on another connection.
        tokio::time::timeout(
            Duration::from_secs(5),
            eventually(|| drained_server_sockets(addr) >= CONNS),
        )
        .await
        .expect("the server never read the 14 bytes of every connection");
        let mut probe = Transport::new(TcpStream::connect(addr).await.unwrap());
        probe.send_msg("probe").await.unwrap();
        assert_eq!(
            probe.recv_msg::<String>().await.unwrap().as_deref(),
            Some("echo:probe")
        );
        let grown = ALLOC.get_peak_memory();
        println!(
            "{CONNS} connections with 14 bytes each: heap grew {:.1} MiB",
            mib(grown)
        );

        drop(clients);
        drop(probe);
        server.shutdown().await;

        assert!(
            grown < CONNS * PER_CONN,
            "{CONNS} connections that sent 14 bytes each grew the heap by {:.1} MiB \
             (limit {:.1} MiB): room is reserved from the declared length, not the bytes received",
            mib(grown),
            mib(CONNS * PER_CONN)
        );
    })
    .await;
}

/// Established server-side sockets of `server` (from `/proc/net/tcp`) whose
/// receive queue is empty: the server has read all that arrived.
fn drained_server_sockets(server: SocketAddr) -> usize {
    let port = format!(":{:04X}", server.port());
    let table = std::fs::read_to_string("/proc/net/tcp").expect("procfs");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, state 01 = ESTABLISHED, "tx_queue:rx_queue"
            fields.len() > 4
                && fields[1].ends_with(&port)
                && fields[3] == "01"
                && fields[4]
                    .split_once(':')
                    .is_some_and(|(_, rx)| u64::from_str_radix(rx, 16) == Ok(0))
        })
        .count()
}

// ---------------------------------------------------------------------------
// Multiplexed helpers

/// Handler for the multiplexed tests: "gated" waits until the test opens the
/// gate, "block" never finishes (until dropped), anything else is echoed at
/// once. Counts handlers running now and at most.
#[derive(Clone)]
struct Lab {
    gate: watch::Receiver<bool>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

impl Lab {
    /// The handler and the sender that opens its gate.
    fn new() -> (watch::Sender<bool>, Lab) {
        let (open, gate) = watch::channel(false);
        let lab = Lab {
            gate,
            running: Arc::default(),
            peak: Arc::default(),
            started: Arc::default(),
        };
        (open, lab)
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// Counts a handler out when its future ends or is dropped (cancelled).
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Handler for Lab {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _running = Running(self.running.clone());
        match req.as_str() {
            "gated" => {
                let mut gate = self.gate.clone();
                let _ = gate.wait_for(|open| *open).await;
                Ok(Some("opened".into()))
            }
            "block" => std::future::pending().await,
            _ => Ok(Some(format!("echo:{req}"))),
        }
    }
}

fn mux() -> Config {
    Config::default().profile(Profile::Multiplexed)
}

// ---------------------------------------------------------------------------
// 3. Notifies count against max_in_flight

#[tokio::test]
async fn one_way_messages_count_against_max_in_flight() {
    within(async {
        let (open, lab) = Lab::new();
        let config = mux().max_in_flight(4).busy(BusyPolicy::Refuse);
        let server = serve(lab.clone(), config).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        for _ in 0..100 {
            c.send(Kind::Notify, 0, "gated").await;
        }
        c.send(Kind::Request, 1, "probe").await;

        // A server that reads on answers the probe (busy, at the limit) once
        // it has read every notify; one that stops reading at the limit
        // answers it only after the gate opens. Either way the gate stays
        // shut long enough for every handler it starts to be counted.
        let early = tokio::time::timeout(Duration::from_secs(1), c.recv_bytes()).await;
        open.send_replace(true);
        let probe = match early {
            Ok(answer) => answer,
            Err(_) => tokio::time::timeout(Duration::from_secs(3), c.recv_bytes())
                .await
                .expect("the probe request was never answered"),
        };
        let (header, _) = probe.expect("the server closed the connection");
        assert_eq!(header.id, 1, "{header:?}");
        tokio::time::timeout(Duration::from_secs(3), eventually(|| lab.running() == 0))
            .await
            .expect("handlers still running after the gate opened");
        let peak = lab.peak.load(Ordering::SeqCst);
        let started = lab.started.load(Ordering::SeqCst);
        println!("peak {peak} handlers at once; {started} started");

        c.send(Kind::Request, 2, "ping").await;
        let (header, body) = tokio::time::timeout(Duration::from_secs(3), c.recv_bytes())
            .await
            .expect("no answer to a request after the notifies")
            .expect("the server closed the connection");
        assert_eq!((header.kind, header.id), (Kind::Response, 2));
        assert_eq!(&body[..], b"echo:ping");
        server.shutdown().await;

        assert!(
            peak <= 4,
            "{peak} handlers ran at once on a connection with max_in_flight 4 \
             (100 notifies sent, {started} handlers started)"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// 4. A cancel is read at the limit

#[tokio::test]
async fn a_cancel_is_read_even_at_the_in_flight_limit() {
    within(async {
        let (_open, lab) = Lab::new();
        let config = mux()
            .max_in_flight(2)
            .busy(BusyPolicy::Wait)
            .shutdown_grace(Duration::from_millis(200));
        let server = serve(lab.clone(), config).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Request, 1, "block").await;
        c.send(Kind::Request, 2, "block").await;
        tokio::time::timeout(Duration::from_secs(3), eventually(|| lab.running() == 2))
            .await
            .expect("the two blocking requests never started");
        c.send(Kind::Cancel, 1, "").await;
        c.send(Kind::Cancel, 2, "").await;
        c.send(Kind::Request, 3, "ping").await;

        // Frames for the cancelled ids, if any, are allowed and skipped.
        let answer = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match c.recv_bytes().await {
                    Some((header, body)) if header.id == 3 => return Some((header, body)),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await;
        let running = lab.running();
        let (header, body) = answer
            .unwrap_or_else(|_| {
                panic!(
                    "no answer to request 3 within 3 s: the cancels of 1 and 2 were not \
                     read at the limit ({running} handlers still running)"
                )
            })
            .expect("the server closed the connection before answering request 3");
        assert_eq!(
            (header.kind, &body[..]),
            (Kind::Response, &b"echo:ping"[..])
        );
        // Dropping a cancelled handler may lag its cancel a little.
        tokio::time::timeout(Duration::from_secs(3), eventually(|| lab.running() == 0))
            .await
            .expect("the cancels did not drop their handlers");
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// 5. Requests unread at shutdown are answered

#[tokio::test]
async fn requests_unread_at_shutdown_get_shutting_down_errors() {
    within(async {
        let (open, lab) = Lab::new();
        let config = mux()
            .max_in_flight(1)
            .busy(BusyPolicy::Wait)
            .shutdown_grace(Duration::from_secs(2));
        let server = serve(lab.clone(), config).await;
        let mut c = MuxPeer::connect(server.local_addr()).await;
        c.send(Kind::Request, 1, "gated").await;
        for id in 2..=5 {
            c.send(Kind::Request, id, "fast").await;
        }
        // Request 1 holds the connection's only slot: 2..=5 wait unread.
        tokio::time::timeout(Duration::from_secs(3), eventually(|| lab.running() == 1))
            .await
            .expect("request 1 never started");

        let stopping = tokio::spawn({
            let server = server.clone();
            async move { server.shutdown().await }
        });
        tokio::time::timeout(
            Duration::from_secs(3),
            eventually(|| server.is_shutting_down()),
        )
        .await
        .expect("shutdown never began");
        open.send_replace(true);

        // Everything the server sends until it closes: (kind, error code).
        let mut answers: BTreeMap<u64, Vec<(Kind, Option<u8>)>> = BTreeMap::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some((header, body)) = c.recv_bytes().await {
                let code =
                    (header.kind == Kind::Error).then(|| ErrorCode::parse(&body).0.to_byte());
                answers
                    .entry(header.id)
                    .or_default()
                    .push((header.kind, code));
            }
        })
        .await
        .expect("the server did not close the connection within 5 s of shutdown");
        tokio::time::timeout(Duration::from_secs(3), stopping)
            .await
            .expect("shutdown did not finish")
            .unwrap();
        println!("answers before close: {answers:?}");

        assert_eq!(
            answers.get(&1).map(Vec::as_slice),
            Some(&[(Kind::Response, None)][..]),
            "request 1 (running when shutdown began) must get its response; got {answers:?}"
        );
        let missing: Vec<u64> = (2..=5).filter(|id| !answers.contains_key(id)).collect();
        assert!(
            missing.is_empty(),
            "requests {missing:?} got neither a response nor an error before the \
             connection closed; got {answers:?}"
        );
        for id in 2..=5 {
            let got = &answers[&id];
            let ok = matches!(
                got.as_slice(),
                [(Kind::Response, None)] | [(Kind::Error, Some(6))]
            );
            assert!(
                ok,
                "request {id}: expected one response or one error with code 6 \
                 (shutting down), got {got:?}"
            );
        }
        let strays: Vec<&u64> = answers.keys().filter(|id| !(1..=5).contains(*id)).collect();
        assert!(strays.is_empty(), "frames for unknown ids {strays:?}");
    })
    .await;
}
