//! One memory budget for the whole server: the large frames arriving on
//! every connection together hold at most `max_total_partial_bytes`, so
//! many clients each sending most of a large frame cannot grow the server
//! past it, and an ordinary client is still served meanwhile.

mod common;

use std::time::Duration;

use common::{bounded, echo_server, eventually};
use enchufe::Client;
use enchufe_server::Config;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_arriving_on_many_connections_stay_within_the_budget() {
    bounded(async {
        let budget = 32 * MIB;
        let frame = 8 * MIB;
        let config = Config::default()
            .max_frame_length(frame)
            .max_total_partial_bytes(budget);
        let server = echo_server(config).await;
        // 20 clients, each sending the header and all but one byte of an
        // 8 MiB frame: 160 MiB without the budget.
        let mut senders = Vec::new();
        for _ in 0..20 {
            let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
            senders.push(tokio::spawn(async move {
                let mut bytes = (frame as u32).to_be_bytes().to_vec();
                bytes.resize(4 + frame - 1, 7);
                // Blocks once the server stops reading.
                let _ = raw.write_all(&bytes).await;
                std::future::pending::<()>().await;
                drop(raw);
            }));
        }
        eventually(|| server.stats().reads_paused_for_memory > 0).await;
        // Filled: the rest wait, holding nothing more.
        eventually(|| server.stats().partial_bytes > (budget / 2) as u64).await;

        // An ordinary client is served while the budget is full.
        let served = tokio::time::timeout(Duration::from_secs(2), async {
            let client = Client::connect(server.local_addr()).await.unwrap();
            client.request::<_, String>("hi").await.unwrap()
        })
        .await;
        assert_eq!(served.ok().as_deref(), Some("echo:hi"));

        let stats = server.stats();
        assert!(
            stats.partial_bytes_peak <= budget as u64,
            "held {} MiB past the budget of {} MiB",
            stats.partial_bytes_peak / MIB as u64,
            budget / MIB
        );
        // The senders go away (or, left alone, the frame timeout would cut
        // them): every byte comes back.
        for sender in senders {
            sender.abort();
        }
        eventually(|| server.connection_count() == 0).await;
        assert_eq!(server.stats().partial_bytes, 0);
        server.shutdown().await;
    })
    .await;
}
