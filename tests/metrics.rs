//! The `metrics` feature: exact counts recorded through the `metrics`
//! facade (read with metrics-util's `DebuggingRecorder`) for known
//! traffic, connection ends and dropped pushes, on both roles.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, eventually, serve};
use enchufe::framing::Transport;
use enchufe::{handler_fn, Client, Connection, Handler};
use enchufe_server::{Config, SlowConsumer};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// The recorder is global to the process, so the tests here take turns.
static TURN: Mutex<()> = Mutex::const_new(());

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this process");
        snapshotter
    })
}

/// Everything recorded since [`Recorded::start`], as `name{label=value,...}`
/// (labels sorted) -> value. The debugging recorder hands out counters and
/// gauges as changes since its last snapshot, so they are added up here.
#[derive(Default)]
struct Recorded(
    HashMap<String, f64>,
    /// Name -> unit and help, for the metrics that were described.
    HashMap<String, (Option<Unit>, String)>,
);

impl Recorded {
    /// Forgets what earlier tests recorded.
    fn start() -> Recorded {
        snapshotter().snapshot();
        Recorded::default()
    }

    fn take(&mut self) {
        for (key, unit, help, value) in snapshotter().snapshot().into_vec() {
            if let Some(help) = help {
                self.1
                    .insert(key.key().name().to_string(), (unit, help.to_string()));
            }
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => continue,
            };
            *self.0.entry(name).or_default() += value;
        }
    }

    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// Asserts each `(name, value)` of the last snapshot.
    fn assert_all(&self, expected: &[(&str, f64)]) {
        for &(name, value) in expected {
            assert_eq!(self.get(name), value, "{name}: {:?}", self.0);
        }
    }

    /// Takes snapshots until `name` reaches `value` (bounded by the test's
    /// limit): what a connection reports when it ends lands a moment after
    /// the other end sees it end.
    async fn wait_for(&mut self, name: &str, value: f64) {
        loop {
            self.take();
            if self.get(name) >= value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn echo() -> impl Handler {
    handler_fn(|frame: Bytes, _conn| async move { Ok::<_, Infallible>(Some(frame)) })
}

#[tokio::test]
async fn a_server_counts_its_connections_frames_and_bytes_exactly() {
    let _turn = TURN.lock().await;
    bounded(async {
        let mut recorded = Recorded::start();
        let server = serve(echo(), Config::default()).await;
        let mut peer = Transport::new(TcpStream::connect(server.local_addr()).await.unwrap());
        // Five frames of 1, 2, ... 5 bytes: 5 frames and 4 × 5 + 15 bytes
        // each way.
        for n in 1..=5usize {
            peer.send(Bytes::from(vec![b'x'; n])).await.unwrap();
            let reply = peer.recv().await.unwrap().expect("the echo");
            assert_eq!(reply.len(), n);
        }
        recorded.take();
        assert_eq!(recorded.get("enchufe_open_connections{role=server}"), 1.0);
        assert_eq!(
            recorded.get("enchufe_opened_connections_total{role=server}"),
            1.0
        );

        drop(peer);
        eventually(|| server.connection_count() == 0).await;
        recorded
            .wait_for(
                "enchufe_closed_connections_total{reason=peer_closed,role=server}",
                1.0,
            )
            .await;
        recorded.assert_all(&[
            ("enchufe_open_connections{role=server}", 0.0),
            ("enchufe_opened_connections_total{role=server}", 1.0),
            (
                "enchufe_closed_connections_total{reason=peer_closed,role=server}",
                1.0,
            ),
            ("enchufe_received_frames_total{role=server}", 5.0),
            ("enchufe_sent_frames_total{role=server}", 5.0),
            ("enchufe_received_bytes_total{role=server}", 35.0),
            ("enchufe_sent_bytes_total{role=server}", 35.0),
        ]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_counts_its_traffic_and_a_bad_connection_counts_an_error_by_kind() {
    let _turn = TURN.lock().await;
    bounded(async {
        let mut recorded = Recorded::start();
        let config = Config::default().max_frame_length(64);
        let server = serve(echo(), config).await;

        // Plain, so that the figures are the three frames and nothing else
        // (a multiplexed client adds its hello and 9-byte headers).
        let plain = enchufe::client::Config::default().profile(enchufe::Profile::Plain);
        let client = Client::connect_with(server.local_addr(), plain)
            .await
            .unwrap();
        for _ in 0..3 {
            let reply: String = client.request("hola").await.unwrap();
            assert_eq!(reply, "hola");
        }
        client.close().await.unwrap();
        recorded
            .wait_for(
                "enchufe_closed_connections_total{reason=peer_closed,role=client}",
                1.0,
            )
            .await;
        recorded.assert_all(&[
            ("enchufe_open_connections{role=client}", 0.0),
            ("enchufe_opened_connections_total{role=client}", 1.0),
            ("enchufe_sent_frames_total{role=client}", 3.0),
            ("enchufe_received_frames_total{role=client}", 3.0),
            ("enchufe_sent_bytes_total{role=client}", 24.0),
            ("enchufe_received_bytes_total{role=client}", 24.0),
        ]);

        // A header declaring more than the server's 64-byte limit.
        let mut bad = TcpStream::connect(server.local_addr()).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut bad, &1000u32.to_be_bytes())
            .await
            .unwrap();
        recorded
            .wait_for(
                "enchufe_errors_total{kind=frame_too_large,role=server}",
                1.0,
            )
            .await;
        assert_eq!(
            recorded.get("enchufe_closed_connections_total{reason=error,role=server}"),
            1.0
        );
        assert_eq!(
            recorded.get("enchufe_received_bytes_total{role=server}"),
            24.0 + 4.0
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn both_ends_of_a_multiplexed_connection_count_the_hellos_alike() {
    let _turn = TURN.lock().await;
    bounded(async {
        let mut recorded = Recorded::start();
        let server = serve(echo(), Config::default()).await;
        // Multiplexed: each end sends a hello and reads the other's, then
        // one request and its reply.
        let client = Client::connect(server.local_addr()).await.unwrap();
        let reply: String = client.request("hola").await.unwrap();
        assert_eq!(reply, "hola");
        client.close().await.unwrap();
        for end in ["client", "server"] {
            let name = format!("enchufe_closed_connections_total{{reason=peer_closed,role={end}}}");
            recorded.wait_for(&name, 1.0).await;
        }
        let get =
            |what: &str, role: &str| recorded.get(&format!("enchufe_{what}_total{{role={role}}}"));
        // Two frames each way, a hello and a message, counted at both ends.
        for (what, value) in [("sent_frames", 2.0), ("received_frames", 2.0)] {
            assert_eq!(get(what, "client"), value, "{what}: {:?}", recorded.0);
            assert_eq!(get(what, "server"), value, "{what}: {:?}", recorded.0);
        }
        // What one end sent, the other received, byte for byte.
        assert_eq!(get("sent_bytes", "client"), get("received_bytes", "server"));
        assert_eq!(get("received_bytes", "client"), get("sent_bytes", "server"));
        assert!(get("sent_bytes", "client") > 0.0, "{:?}", recorded.0);
        server.shutdown().await;
    })
    .await;
}

/// Pushes ten messages at once into a queue of two, counting refusals.
struct Flood(Arc<AtomicU64>);

impl Handler for Flood {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn on_connect(&self, conn: &Connection) {
        for i in 0..10 {
            if conn.try_push(format!("push {i}")).is_err() {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn handle(&self, req: String, _: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(req))
    }
}

#[tokio::test]
async fn dropped_pushes_are_counted() {
    let _turn = TURN.lock().await;
    bounded(async {
        let mut recorded = Recorded::start();
        let refused = Arc::new(AtomicU64::new(0));
        let config = Config::default()
            .outbound_queue(2)
            .slow_consumer(SlowConsumer::DropNewest);
        let server = serve(Flood(refused.clone()), config).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        // Once this is answered, on_connect is over.
        let _: String = client.request("done?").await.unwrap();
        let refused = refused.load(Ordering::Relaxed);
        assert!(refused > 0, "the queue of two took ten pushes");
        recorded.take();
        assert_eq!(
            recorded.get("enchufe_dropped_pushes_total{role=server}"),
            refused as f64
        );
        assert_eq!(server.stats().pushes_dropped, refused);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn describe_gives_every_metric_a_unit_and_help() {
    let _turn = TURN.lock().await;
    bounded(async {
        let mut recorded = Recorded::start();
        // Descriptions show with the metrics that exist: make them exist
        // (building the server describes them).
        let server = serve(echo(), Config::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let _: String = client.request("hola").await.unwrap();
        client.close().await.unwrap();
        recorded
            .wait_for(
                "enchufe_closed_connections_total{reason=peer_closed,role=client}",
                1.0,
            )
            .await;
        let (unit, help) = &recorded.1["enchufe_sent_bytes_total"];
        assert_eq!(*unit, Some(Unit::Bytes));
        assert!(help.contains("Bytes written"), "{help}");
        let (unit, _) = &recorded.1["enchufe_open_connections"];
        assert_eq!(*unit, Some(Unit::Count));
        server.shutdown().await;
    })
    .await;
}

/// Every series `recorder` holds, as `name{label=value,...}` (labels sorted)
/// -> its value and whether it has a `# HELP` line.
fn series(snapshotter: &Snapshotter) -> HashMap<String, (f64, bool)> {
    let mut all = HashMap::new();
    for (key, _unit, help, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => continue,
        };
        all.insert(
            format!("{}{{{}}}", key.name(), labels.join(",")),
            (value, help.is_some()),
        );
    }
    all
}

fn assert_zero_and_described(all: &HashMap<String, (f64, bool)>, expected: &[&str]) {
    for name in expected {
        assert_eq!(all.get(*name), Some(&(0.0, true)), "{name}: {all:?}");
    }
}

#[tokio::test]
async fn every_series_exists_at_zero_with_help_before_the_first_connection() {
    // A recorder of this test's own (no turn needed): only what building a
    // server and a client registered is in it.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let _server =
        metrics::with_local_recorder(&recorder, || enchufe::Server::from_listener(listener));
    let all = series(&snapshotter);
    assert_zero_and_described(
        &all,
        &[
            "enchufe_open_connections{role=server}",
            "enchufe_opened_connections_total{role=server}",
            "enchufe_closed_connections_total{reason=peer_closed,role=server}",
            "enchufe_closed_connections_total{reason=error,role=server}",
            "enchufe_errors_total{kind=io,role=server}",
            "enchufe_errors_total{kind=handler_panic,role=server}",
            "enchufe_received_frames_total{role=server}",
            "enchufe_sent_frames_total{role=server}",
            "enchufe_received_bytes_total{role=server}",
            "enchufe_sent_bytes_total{role=server}",
            "enchufe_dropped_pushes_total{role=server}",
        ],
    );

    // A client: built on one end of a pipe (its connection counts as
    // open, so the gauge is not asked about), nothing ended or failed yet.
    let (ours, _theirs) = tokio::io::duplex(64);
    let plain = enchufe::client::Config::default().profile(enchufe::Profile::Plain);
    let _client = metrics::with_local_recorder(&recorder, || Client::from_io(ours, plain));
    let all = series(&snapshotter);
    assert_zero_and_described(
        &all,
        &[
            "enchufe_closed_connections_total{reason=idle_timeout,role=client}",
            "enchufe_errors_total{kind=not_frames,role=client}",
            "enchufe_sent_bytes_total{role=client}",
        ],
    );
}
