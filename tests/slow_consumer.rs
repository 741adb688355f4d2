//! A client that never reads cannot grow the server's memory, under every
//! slow-consumer policy: 256 MiB is pushed at it, in fresh 256 KiB frames,
//! and the process's peak resident memory stays far below that.
//!
//! This file holds a single test so that the peak RSS it reads
//! (`VmHWM` in /proc/self/status) is this test's alone.
//! Run with `cargo test --test slow_consumer`.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::{bounded, eventually};
use enchufe::{Connection, Handler, Server};
use enchufe_server::{Config, Error, SlowConsumer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const FRAME: usize = 256 * 1024;
const FRAMES: usize = 1024; // 256 MiB in all

/// On a request, pushes FRAMES fresh frames (each its own allocation, so a
/// queue that kept them would hold 256 MiB) and reports what happened.
struct Firehose(mpsc::Sender<Report>);

#[derive(Debug, Default)]
struct Report {
    accepted: usize,
    stalled: usize,
    full: usize,
    closed_after: Option<usize>,
}

impl Handler for Firehose {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, _req: String, conn: &Connection) -> Result<Option<String>, Infallible> {
        let mut report = Report::default();
        for i in 0..FRAMES {
            match conn.push(vec![b'x'; FRAME]).await {
                Ok(()) => report.accepted += 1,
                Err(Error::WriteStalled(_)) => report.stalled += 1,
                Err(Error::QueueFull) => report.full += 1,
                Err(Error::Closed) => {
                    report.closed_after = Some(i);
                    break;
                }
                Err(e) => panic!("unexpected push error: {e}"),
            }
        }
        let _ = self.0.send(report).await;
        Ok(None)
    }
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM value");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_grow_server_memory_under_any_policy() {
    bounded(async {
        for policy in [
            SlowConsumer::Block,
            SlowConsumer::DropNewest,
            SlowConsumer::DropOldest,
            SlowConsumer::Disconnect,
        ] {
            let (tx, mut reports) = mpsc::channel(1);
            let config = Config::default()
                .slow_consumer(policy)
                .outbound_queue(16)
                .write_timeout(Duration::from_millis(300));
            let server = Server::bind("127.0.0.1:0")
                .await
                .unwrap()
                .with_config(config)
                .serve(Firehose(tx));

            // One request, then never read a byte.
            let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
            raw.write_all(b"\x00\x00\x00\x02go").await.unwrap();

            let report = reports.recv().await.unwrap();
            // Whatever the policy, the writer that cannot write drops the
            // client within the write timeout: dropped, not buffered.
            eventually(|| server.connection_count() == 0).await;
            let stats = server.stats();
            println!("{policy:?}: {report:?} {stats:?}");
            assert_eq!(stats.slow_disconnects, 1, "{policy:?}");
            if matches!(policy, SlowConsumer::Block | SlowConsumer::Disconnect) {
                // These wait for room, so the pushes end when the client is dropped.
                assert!(report.closed_after.is_some(), "{policy:?}: {report:?}");
            }
            // Accepted pushes minus those evicted later (DropOldest) were
            // held at some point: socket buffers plus the 16-frame queue.
            let evicted = stats.pushes_dropped as usize - report.full;
            let held_mib = ((report.accepted - evicted) * FRAME) >> 20;
            assert!(held_mib < 64, "{policy:?} held {held_mib} MiB");
            match policy {
                SlowConsumer::DropNewest => {
                    assert!(report.full > 0 && stats.pushes_dropped as usize == report.full)
                }
                SlowConsumer::DropOldest => assert!(stats.pushes_dropped > 0, "{stats:?}"),
                _ => assert_eq!(stats.pushes_dropped, 0, "{policy:?}"),
            }
            server.shutdown().await;
            drop(raw);
        }
        let peak = peak_rss_mib();
        println!("peak RSS {peak} MiB");
        assert!(
            peak < 128,
            "peak RSS {peak} MiB while 4 x 256 MiB were pushed"
        );
    })
    .await;
}
