//! File and stream transfer (`enchufe::transfer`) between an enchufe client
//! and server, over loopback, on both profiles.
//!
//! Covered: files byte-identical with progress on both ends; a reader as
//! the source; the receiver's chunk and window limits; ordinary requests
//! flowing while a transfer runs (their latency measured and printed); a
//! cut transfer resumed from the offset the receiver verified, and started
//! over when the file changed; the idle deadline; cancellation; and bad
//! input: a size over the limit, bad names, an existing file, too many
//! transfers, a duplicate id, a lying sender (hash mismatch, truncation,
//! chunks out of bounds, by hand-written frames), a short source, a full
//! disk. Each failure is a typed error at both ends, leaves no file under
//! the final name, and the server goes on serving. Leftover partial files
//! are pruned by age and total size, and evicted (oldest first) when the
//! disk is full rather than failing an upload.
//!
//! ```text
//! cargo test --test transfer
//! ```

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::bounded;
use common::files::{assert_same_file, names_in, random_file, Tmpfs};
use enchufe::server::{Config, Disconnect};
use enchufe::transfer::{
    receiver, sender, Error, Event, Progress, Reason, Receiver, Routed, TransferId, Upload,
    Violation,
};
use enchufe::{Client, Connection, Handler, Profile, Server, ServerHandle};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::{broadcast, watch};

/// A server that accepts transfers beside its own requests (`echo:<text>`).
struct App {
    files: Receiver,
}

impl Handler for App {
    type Request = Routed<String>;
    type Response = Routed<String>;
    type Error = Infallible;

    async fn handle(
        &self,
        req: Routed<String>,
        conn: &Connection,
    ) -> Result<Option<Routed<String>>, Infallible> {
        Ok(Some(match req {
            Routed::Transfer(frame) => Routed::Transfer(self.files.handle(frame, conn).await),
            Routed::App(text) => Routed::App(format!("echo:{text}")),
        }))
    }

    async fn on_disconnect(&self, conn: &Connection, _: &Disconnect) {
        self.files.disconnected(conn.id());
    }
}

/// What most tests start from: an [`App`] server on `127.0.0.1:0` writing
/// into `out`, a directory `src` for the files to send, and the receiver's
/// events from the start.
struct Fixture {
    src: tempfile::TempDir,
    /// Where the receiver writes: a temporary directory, or a given one.
    out: std::path::PathBuf,
    _out: Option<tempfile::TempDir>,
    server: ServerHandle,
    files: Receiver,
    events: broadcast::Receiver<Event>,
    profile: Profile,
}

impl Fixture {
    async fn new(config: receiver::Config, profile: Profile) -> Fixture {
        let out = tempfile::tempdir().unwrap();
        let mut t = Fixture::at(out.path(), config, profile).await;
        t._out = Some(out);
        t
    }

    async fn at(dir: &Path, config: receiver::Config, profile: Profile) -> Fixture {
        let files = Receiver::new(dir, config);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(Config::default().profile(profile))
            .serve(App {
                files: files.clone(),
            });
        Fixture {
            src: tempfile::tempdir().unwrap(),
            out: dir.to_owned(),
            _out: None,
            events: files.events(),
            server,
            files,
            profile,
        }
    }

    fn out(&self) -> &Path {
        &self.out
    }

    /// A file of `len` pseudo-random bytes in `src`.
    fn file(&self, name: &str, len: u64, seed: u64) -> std::path::PathBuf {
        random_file(self.src.path(), name, len, seed)
    }

    async fn client(&self) -> Client {
        connect(&self.server, self.profile).await
    }

    async fn stop(self) {
        self.server.shutdown().await;
        self.files.shutdown().await;
    }
}

async fn connect(server: &ServerHandle, profile: Profile) -> Client {
    let config = enchufe::client::Config::default().profile(profile);
    Client::connect_with(server.local_addr(), config)
        .await
        .unwrap()
}

/// The next `Started` event: the transfer's id and the receiver's progress.
async fn started(
    events: &mut broadcast::Receiver<Event>,
) -> (TransferId, watch::Receiver<Progress>) {
    loop {
        if let Event::Started { id, progress, .. } = events.recv().await.unwrap() {
            return (id, progress);
        }
    }
}

/// The next `Finished` or `Failed` event: the file's hash, or the error.
async fn ended(events: &mut broadcast::Receiver<Event>) -> Result<String, Arc<Error>> {
    loop {
        match events.recv().await.unwrap() {
            Event::Finished { hash, .. } => return Ok(hash),
            Event::Failed { error, .. } => return Err(error),
            _ => {}
        }
    }
}

/// Gives `first` and then never another byte: a source that stalls.
struct Stalls(std::io::Cursor<Vec<u8>>);

impl AsyncRead for Stalls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => Poll::Pending,
            other => other,
        }
    }
}

fn stalls_after(path: &Path, bytes: usize) -> Stalls {
    let mut data = std::fs::read(path).unwrap();
    data.truncate(bytes);
    Stalls(std::io::Cursor::new(data))
}

async fn small_transfer_works(client: &Client, dir: &Path, name: &str) {
    let data = format!("still serving: {name}");
    let size = data.len() as u64;
    Upload::reader(std::io::Cursor::new(data.clone()), name, size)
        .send(client)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), data);
}

/// Both profiles, each with the sender's default path and its zero-copy
/// one (`sender::Config::zero_copy`).
fn every_mode() -> impl Iterator<Item = (Profile, bool)> {
    [false, true]
        .into_iter()
        .flat_map(|zero_copy| [Profile::Plain, Profile::Multiplexed].map(|p| (p, zero_copy)))
}

#[tokio::test]
async fn files_arrive_byte_identical_with_progress_on_both_ends() {
    bounded(async {
        for (profile, zero_copy) in every_mode() {
            let mut t = Fixture::new(Default::default(), profile).await;
            let file = t.file("datos.bin", 24 << 20, 11);
            let client = t.client().await;

            let upload = Upload::file(&file)
                .await
                .unwrap()
                .config(sender::Config::default().zero_copy(zero_copy));
            let mut sent = upload.progress();
            let sender = client.clone();
            let sending = tokio::spawn(async move { upload.send(&sender).await });
            let (_, mut written) = started(&mut t.events).await;
            let total = 24 << 20;
            written.wait_for(|p| p.done == total).await.unwrap();
            let receipt = sending.await.unwrap().unwrap();
            assert_eq!(*sent.borrow_and_update(), Progress { done: total, total });
            assert_eq!(ended(&mut t.events).await.unwrap(), receipt.hash);
            assert_eq!((receipt.size, receipt.resumed_from), (total, 0));
            assert_same_file(&t.out().join("datos.bin"), &file);
            assert_eq!(names_in(t.out()), ["datos.bin"], "{profile:?}");
            // Zero-copy on plain TCP: every chunk's data left the file by
            // `sendfile`; else the producer read it.
            #[cfg(target_os = "linux")]
            {
                let by_sendfile = if zero_copy { total } else { 0 };
                assert_eq!(client.file_region_bytes(), (by_sendfile, 0), "{profile:?}");
            }
            t.stop().await;
        }
    })
    .await;
}

#[tokio::test]
async fn over_a_unix_socket_a_files_chunks_are_read_and_arrive_the_same() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let files = Receiver::new(out.path(), Default::default());
        let path = dir.path().join("files.sock");
        let server = Server::bind_unix(&path).unwrap().serve(App {
            files: files.clone(),
        });
        let file = random_file(dir.path(), "unix.bin", (5 << 20) + 17, 21);
        let client = Client::connect_unix(&path, Default::default())
            .await
            .unwrap();
        let receipt = Upload::file(&file)
            .await
            .unwrap()
            .config(
                sender::Config::default()
                    .chunk_size(1 << 20)
                    .window(3)
                    .zero_copy(true),
            )
            .send(&client)
            .await
            .unwrap();
        assert_eq!(receipt.size, (5 << 20) + 17);
        assert_same_file(&out.path().join("unix.bin"), &file);
        assert_eq!(client.file_region_bytes(), (0, (5 << 20) + 17));
        server.shutdown().await;
        files.shutdown().await;
    })
    .await;
}

/// A receiver whose first chunk is slow to reach its writer (its handler
/// waits), while later chunks are taken and acknowledged: the acks come
/// out of order, as they may when a handler is descheduled.
struct SlowFirstChunk {
    files: Receiver,
    /// Holds the first chunk until notified instead of for 300 ms.
    release: Option<Arc<tokio::sync::Notify>>,
}

impl Handler for SlowFirstChunk {
    type Request = Bytes;
    type Response = enchufe::transfer::Frame;
    type Error = Infallible;

    async fn handle(
        &self,
        req: Bytes,
        conn: &Connection,
    ) -> Result<Option<enchufe::transfer::Frame>, Infallible> {
        // A chunk: "ENXF" 'C' | id (16) | offset (u64 BE) | data.
        if req.len() > 29 && req[4] == b'C' && req[21..29] == [0; 8] {
            match &self.release {
                Some(release) => release.notified().await,
                None => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        let frame = enchufe::framing::Decode::decode(bytes::BytesMut::from(&req[..])).unwrap();
        Ok(Some(self.files.handle(frame, conn).await))
    }
}

#[tokio::test]
async fn the_sender_stays_within_the_window_of_its_oldest_unacknowledged_chunk() {
    bounded(async {
        let out = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let config = receiver::Config::default().max_chunk(64 << 10).window(4);
        let files = Receiver::new(out.path(), config);
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .serve(SlowFirstChunk {
                files: files.clone(),
                release: None,
            });
        let file = random_file(src.path(), "orden.bin", 40 << 16, 23);
        let client = connect(&server, Profile::Multiplexed).await;
        for zero_copy in [false, true] {
            Upload::file(&file)
                .await
                .unwrap()
                .restart()
                .config(sender::Config::default().zero_copy(zero_copy))
                .send(&client)
                .await
                .unwrap();
            assert_same_file(&out.path().join("orden.bin"), &file);
            std::fs::remove_file(out.path().join("orden.bin")).unwrap();
        }
        // A reader's chunks keep the same rule.
        let data = std::fs::read(&file).unwrap();
        let size = data.len() as u64;
        Upload::reader(std::io::Cursor::new(data), "orden2.bin", size)
            .send(&client)
            .await
            .unwrap();
        assert_same_file(&out.path().join("orden2.bin"), &file);
        server.shutdown().await;
        files.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_zero_copy_upload_cancelled_midway_deletes_the_partial_file() {
    bounded(async {
        let out = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let files = Receiver::new(out.path(), Default::default());
        let mut events = files.events();
        // The first chunk is held until the end: the upload can only end
        // by its cancel, while chunks are in flight.
        let release = Arc::new(tokio::sync::Notify::new());
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .serve(SlowFirstChunk {
                files: files.clone(),
                release: Some(release.clone()),
            });
        let file = random_file(src.path(), "cancelar.bin", 16 << 20, 24);
        let client = connect(&server, Profile::Multiplexed).await;
        let upload = Upload::file(&file)
            .await
            .unwrap()
            .config(sender::Config::default().zero_copy(true));
        let cancel = upload.canceller();
        let mut acked = upload.progress();
        let sender = client.clone();
        let sending = tokio::spawn(async move { upload.send(&sender).await });
        // Chunks after the held one are acknowledged: the send loop runs.
        acked.wait_for(|p| p.done > 0).await.unwrap();
        cancel.cancel();
        let sent = tokio::time::timeout(Duration::from_secs(10), sending)
            .await
            .expect("the cancel ends the upload while a chunk is held");
        assert!(matches!(sent.unwrap(), Err(Error::Cancelled)));
        assert_eq!(
            ended(&mut events).await.unwrap_err().reason(),
            Some(Reason::Cancelled)
        );
        assert!(names_in(out.path()).is_empty());
        release.notify_waiters();
        server.shutdown().await;
        files.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_file_that_shrinks_during_the_send_is_source_ended() {
    bounded(async {
        for (profile, zero_copy) in every_mode() {
            let mut t = Fixture::new(Default::default(), profile).await;
            let file = t.file("encoge.bin", 24 << 20, 22);
            let client = t.client().await;
            // The size is read here; the file is cut before its chunks go.
            let upload = Upload::file(&file)
                .await
                .unwrap()
                .config(sender::Config::default().zero_copy(zero_copy));
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(3 << 20)
                .unwrap();
            let err = upload.send(&client).await.unwrap_err();
            match err {
                Error::SourceEnded { expected, read } => {
                    assert_eq!((expected, read), (24 << 20, 3 << 20), "{profile:?}")
                }
                other => panic!("{profile:?}: {other:?}"),
            }
            // The receiver was told, and keeps no file under the name.
            assert!(ended(&mut t.events).await.is_err());
            assert!(!t.out().join("encoge.bin").exists());
            small_transfer_works(&client, t.out(), "despues.txt").await;
            t.stop().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_reader_is_sent_within_the_receivers_chunk_and_window() {
    bounded(async {
        // The sender asks for 1 MiB chunks, 8 in flight; the receiver allows
        // 64 KiB and 2, and checks every chunk against them.
        let config = receiver::Config::default().max_chunk(64 << 10).window(2);
        let t = Fixture::new(config, Profile::Multiplexed).await;
        let client = t.client().await;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let receipt = Upload::reader(
            std::io::Cursor::new(data.clone()),
            "flujo.bin",
            data.len() as u64,
        )
        .send(&client)
        .await
        .unwrap();
        assert_eq!(receipt.size, data.len() as u64);
        assert_eq!(std::fs::read(t.out().join("flujo.bin")).unwrap(), data);
        t.stop().await;
    })
    .await;
}

#[tokio::test]
async fn requests_keep_flowing_during_a_transfer_on_the_multiplexed_profile() {
    bounded(async {
        let t = Fixture::new(Default::default(), Profile::Multiplexed).await;
        let file = t.file("grande.bin", 128 << 20, 12);
        let client = t.client().await;

        let upload = Upload::file(&file).await.unwrap();
        let progress = upload.progress();
        let sender = client.clone();
        let sending = tokio::spawn(async move { upload.send(&sender).await });
        let mut latencies = Vec::new();
        while !sending.is_finished() {
            let start = Instant::now();
            let reply: String = client.request("ping").await.unwrap();
            assert_eq!(reply, "echo:ping");
            // Only requests answered while the body was still moving count.
            if progress.borrow().done < 128 << 20 {
                latencies.push(start.elapsed());
            }
        }
        sending.await.unwrap().unwrap();
        assert_same_file(&t.out().join("grande.bin"), &file);
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{} requests during a 128 MiB transfer: p50 {:?}, p99 {:?}, max {:?}",
            latencies.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
        // Not starved: requests were answered all along, not after the file.
        assert!(
            latencies.len() >= 10,
            "only {} requests answered during the transfer",
            latencies.len()
        );
        t.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_cut_transfer_resumes_from_the_verified_offset() {
    bounded(async {
        let mut t = Fixture::new(Default::default(), Profile::Plain).await;
        let file = t.file("corte.bin", 12 << 20, 13);

        // The first attempt stalls after 5 MiB; the connection then goes.
        let client = t.client().await;
        let id = Upload::file(&file).await.unwrap().transfer_id();
        let first = Upload::reader(stalls_after(&file, 5 << 20), "corte.bin", 12 << 20).id(id);
        let cut = tokio::spawn(async move { first.send(&client).await });
        let (_, mut written) = started(&mut t.events).await;
        written.wait_for(|p| p.done == 5 << 20).await.unwrap();
        cut.abort(); // drops the send future and the client: a cut
        let error = ended(&mut t.events).await.unwrap_err();
        assert_eq!(error.reason(), Some(Reason::Interrupted));
        let part = format!(".enchufe-{id}.part");
        assert_eq!(names_in(t.out()), [part.as_str()]);
        assert_eq!(
            std::fs::metadata(t.out().join(&part)).unwrap().len(),
            5 << 20
        );

        // The same file again: same id, so it resumes (from the file
        // itself: the zero-copy path's hash pass starts on the prefix's).
        let client = t.client().await;
        let receipt = Upload::file(&file)
            .await
            .unwrap()
            .config(sender::Config::default().zero_copy(true))
            .send(&client)
            .await
            .unwrap();
        assert_eq!(receipt.resumed_from, 5 << 20);
        #[cfg(target_os = "linux")]
        assert_eq!(client.file_region_bytes(), ((12 << 20) - (5 << 20), 0));
        assert_same_file(&t.out().join("corte.bin"), &file);
        assert_eq!(names_in(t.out()), ["corte.bin"]);
        t.stop().await;
    })
    .await;
}

/// Sends the first `bytes` of `path` as `name` with `id`, then cuts the
/// connection once the receiver has written them.
async fn leave_partial(t: &Fixture, path: &Path, bytes: usize, name: &str, id: TransferId) {
    let mut events = t.files.events();
    let client = t.client().await;
    let size = std::fs::metadata(path).unwrap().len();
    let first = Upload::reader(stalls_after(path, bytes), name, size).id(id);
    let cut = tokio::spawn(async move { first.send(&client).await });
    let (_, mut written) = started(&mut events).await;
    written.wait_for(|p| p.done == bytes as u64).await.unwrap();
    cut.abort();
    assert_eq!(
        ended(&mut events).await.unwrap_err().reason(),
        Some(Reason::Interrupted)
    );
}

#[tokio::test]
async fn a_resume_whose_prefix_differs_starts_over() {
    bounded(async {
        let t = Fixture::new(Default::default(), Profile::Multiplexed).await;
        let old = t.file("viejo.bin", 4 << 20, 14);
        let new = t.file("nuevo.bin", 4 << 20, 15);
        let id = TransferId::random();
        let part = format!(".enchufe-{id}.part");

        // A file can be read again: it starts over from byte 0.
        leave_partial(&t, &old, 2 << 20, "f.bin", id).await;
        let client = t.client().await;
        let upload = Upload::file(&new).await.unwrap().name("f.bin").id(id);
        let receipt = upload.send(&client).await.unwrap();
        assert_eq!(receipt.resumed_from, 0);
        assert_same_file(&t.out().join("f.bin"), &new);

        // A reader cannot: a typed error, and the stale partial is dropped.
        leave_partial(&t, &old, 2 << 20, "g.bin", id).await;
        assert!(names_in(t.out()).contains(&part));
        let source = tokio::fs::File::open(&new).await.unwrap();
        let reader = Upload::reader(source, "g.bin", 4 << 20).id(id);
        let err = reader.send(&client).await.unwrap_err();
        assert!(
            matches!(err, Error::ResumeMismatch { offset } if offset == 2 << 20),
            "{err}"
        );
        assert_eq!(names_in(t.out()), ["f.bin"]);
        t.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_stalled_transfer_ends_at_the_idle_deadline_and_keeps_its_part() {
    bounded(async {
        let config = receiver::Config::default().idle_timeout(Duration::from_millis(300));
        let mut t = Fixture::new(config, Profile::Plain).await;
        let file = t.file("lento.bin", 3 << 20, 16);
        let client = t.client().await;
        let upload = Upload::reader(stalls_after(&file, 1 << 20), "lento.bin", 3 << 20);
        let id = upload.transfer_id();
        let sender = client.clone();
        let stalled = tokio::spawn(async move { upload.send(&sender).await });
        let error = ended(&mut t.events).await.unwrap_err();
        assert!(
            matches!(*error, Error::Stalled(d) if d == Duration::from_millis(300)),
            "{error}"
        );
        assert_eq!(names_in(t.out()), [format!(".enchufe-{id}.part")]);
        stalled.abort();
        // The connection lives on.
        small_transfer_works(&client, t.out(), "luego.txt").await;
        t.stop().await;
    })
    .await;
}

#[tokio::test]
async fn cancelling_deletes_the_partial_file() {
    bounded(async {
        let mut t = Fixture::new(Default::default(), Profile::Multiplexed).await;
        let file = t.file("cancelar.bin", 4 << 20, 17);
        let client = t.client().await;
        let upload = Upload::reader(stalls_after(&file, 2 << 20), "cancelar.bin", 4 << 20);
        let cancel = upload.canceller();
        let sender = client.clone();
        let sending = tokio::spawn(async move { upload.send(&sender).await });
        started(&mut t.events)
            .await
            .1
            .wait_for(|p| p.done == 2 << 20)
            .await
            .unwrap();
        cancel.cancel();
        assert!(matches!(sending.await.unwrap(), Err(Error::Cancelled)));
        assert_eq!(
            ended(&mut t.events).await.unwrap_err().reason(),
            Some(Reason::Cancelled)
        );
        assert!(names_in(t.out()).is_empty());

        // From the receiving end: the sender is refused as cancelled.
        let upload = Upload::reader(stalls_after(&file, 2 << 20), "otro.bin", 4 << 20);
        let sender = client.clone();
        let sending = tokio::spawn(async move { upload.send(&sender).await });
        let (id, mut written) = started(&mut t.events).await;
        written.wait_for(|p| p.done == 2 << 20).await.unwrap();
        assert!(t.files.cancel(id));
        assert_eq!(
            ended(&mut t.events).await.unwrap_err().reason(),
            Some(Reason::Cancelled)
        );
        assert!(names_in(t.out()).is_empty());
        sending.abort(); // its source stalls: it would only notice at its next chunk
        assert!(!t.files.cancel(id));

        small_transfer_works(&client, t.out(), "luego.txt").await;
        t.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_offers_are_typed_and_the_server_keeps_serving() {
    bounded(async {
        let config = receiver::Config::default()
            .max_file_size(1 << 20)
            .max_transfers(1);
        let mut t = Fixture::new(config, Profile::Multiplexed).await;
        let client = t.client().await;
        let refused = |size: u64, name: &str| {
            let client = client.clone();
            let upload = Upload::reader(tokio::io::repeat(0).take(size), name, size);
            async move { upload.send(&client).await.unwrap_err() }
        };

        let err = refused(2 << 20, "grande.bin").await;
        assert_eq!(err.reason(), Some(Reason::TooLarge), "{err}");
        for name in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            ".enchufe-x.part",
        ] {
            assert_eq!(
                refused(1, name).await.reason(),
                Some(Reason::BadName),
                "{name:?}"
            );
        }
        std::fs::write(t.out().join("existe.txt"), b"antes").unwrap();
        assert_eq!(
            refused(1, "existe.txt").await.reason(),
            Some(Reason::Exists)
        );
        assert_eq!(std::fs::read(t.out().join("existe.txt")).unwrap(), b"antes");

        // One transfer running (stalled); a second is refused as busy, and
        // the same id from another live connection as in use.
        let stuck = Upload::reader(Stalls(std::io::Cursor::new(vec![1; 10])), "uno.bin", 100);
        let id = stuck.transfer_id();
        let other = t.client().await;
        let running = tokio::spawn(async move { stuck.send(&other).await });
        started(&mut t.events).await;
        assert_eq!(refused(1, "dos.bin").await.reason(), Some(Reason::Busy));
        let twin = Upload::reader(&b"x"[..], "uno.bin", 1).id(id);
        assert_eq!(
            twin.send(&client).await.unwrap_err().reason(),
            Some(Reason::InUse)
        );
        running.abort();
        ended(&mut t.events).await.unwrap_err();

        // A source shorter than it said: the sender's own typed error.
        let short = Upload::reader(&b"corto"[..], "corto.bin", 10);
        assert!(matches!(
            short.send(&client).await,
            Err(Error::SourceEnded {
                expected: 10,
                read: 5
            })
        ));
        assert_eq!(
            ended(&mut t.events).await.unwrap_err().reason(),
            Some(Reason::Cancelled)
        );

        small_transfer_works(&client, t.out(), "luego.txt").await;
        let mut names = names_in(t.out());
        names.retain(|n| !n.starts_with(".enchufe-"));
        assert_eq!(names, ["existe.txt", "luego.txt"]);
        t.stop().await;
    })
    .await;
}

/// A hand-written control frame: `ENXF`, `J`, JSON.
fn control(json: serde_json::Value) -> Bytes {
    let mut f = b"ENXFJ".to_vec();
    f.extend_from_slice(json.to_string().as_bytes());
    f.into()
}

/// A hand-written chunk frame: `ENXF`, `C`, id, offset (u64 BE), data.
fn chunk(id: &[u8; 16], offset: u64, data: &[u8]) -> Bytes {
    let mut f = b"ENXFC".to_vec();
    f.extend_from_slice(id);
    f.extend_from_slice(&offset.to_be_bytes());
    f.extend_from_slice(data);
    f.into()
}

/// Sends a frame and reads the reply's JSON.
async fn ask(client: &Client, frame: Bytes) -> serde_json::Value {
    let reply: Bytes = client.request(frame).await.unwrap();
    assert_eq!(&reply[..5], b"ENXFJ");
    serde_json::from_slice(&reply[5..]).unwrap()
}

#[tokio::test]
async fn a_lying_sender_gets_typed_refusals_by_the_bytes() {
    bounded(async {
        let config = receiver::Config::default().max_chunk(4).window(2);
        let mut t = Fixture::new(config, Profile::Plain).await;
        let client = t.client().await;
        let offer = |id: &[u8; 16], name: &str, size: u64| {
            let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
            control(serde_json::json!({"type": "offer", "id": id, "name": name, "size": size, "digest": "xxh3-128", "restart": false}))
        };
        let finish = |id: &[u8; 16], hash: &str| {
            let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
            control(serde_json::json!({"type": "finish", "id": id, "hash": hash}))
        };

        // An offer checked with another hash (another version of enchufe):
        // refused at once, naming both, before any byte is sent.
        let other = control(serde_json::json!({"type": "offer", "id": "0f".repeat(16), "name": "o.txt",
            "size": 8, "digest": "blake3", "restart": false}));
        let r = ask(&client, other).await;
        assert_eq!(r["reason"], "protocol", "{r}");
        let message = r["message"].as_str().unwrap();
        assert!(message.contains("\"blake3\"") && message.contains("\"xxh3-128\""), "{message}");
        // An offer from a version before the field (it hashed with BLAKE3):
        // the same typed refusal, not a decode failure.
        let old = control(serde_json::json!({"type": "offer", "id": "0e".repeat(16), "name": "o.txt",
            "size": 8, "restart": false}));
        let r = ask(&client, old).await;
        assert_eq!(r["reason"], "protocol", "{r}");
        assert!(r["message"].as_str().unwrap().contains("\"blake3\""), "{r}");

        // A wrong hash: the bytes arrive, the file never takes its name.
        let a = [0xa; 16];
        let accept = ask(&client, offer(&a, "a.txt", 8)).await;
        assert_eq!(accept["type"], "accept");
        assert_eq!((accept["offset"].as_u64(), accept["max_chunk"].as_u64()), (Some(0), Some(4)));
        assert_eq!(ask(&client, chunk(&a, 0, b"hola")).await["type"], "ack");
        assert_eq!(ask(&client, chunk(&a, 4, b"chao")).await["type"], "ack");
        let r = ask(&client, finish(&a, &"0".repeat(64))).await;
        assert_eq!((r["type"].as_str(), r["reason"].as_str()), (Some("refused"), Some("hash_mismatch")));

        // Finish before every byte: truncated.
        let b = [0xb; 16];
        ask(&client, offer(&b, "b.txt", 8)).await;
        ask(&client, chunk(&b, 0, b"hola")).await;
        let r = ask(&client, finish(&b, &"0".repeat(64))).await;
        assert_eq!(r["reason"], "truncated");

        // Chunks out of bounds: over max_chunk or past the size are refused
        // at once; beyond the window (2 chunks of 4 bytes) ends the transfer.
        let c = [0xc; 16];
        ask(&client, offer(&c, "c.txt", 100)).await;
        assert_eq!(ask(&client, chunk(&c, 0, b"12345")).await["reason"], "protocol");
        assert_eq!(ask(&client, chunk(&c, 99, b"12")).await["reason"], "protocol");
        assert_eq!(ask(&client, chunk(&c, 0, b"1234")).await["type"], "ack");
        assert_eq!(ask(&client, chunk(&c, 12, b"1234")).await["type"], "ack");
        let r = ask(&client, finish(&c, &"0".repeat(64))).await;
        assert_eq!(r["reason"], "protocol", "{r}");
        // The writer ended it, and says how (a's and b's ends come first).
        let failed = loop {
            match ended(&mut t.events).await {
                Err(e) if matches!(&*e, Error::Protocol(_)) => break e,
                _ => {}
            }
        };
        assert!(
            matches!(&*failed, Error::Protocol(Violation::ChunkBeyondWindow { offset: 12 })),
            "{failed}"
        );
        let r = ask(&client, chunk(&[0xee; 16], 0, b"x")).await;
        assert_eq!(r["reason"], "unknown_transfer");
        let r = ask(&client, control(serde_json::json!({"type": "done", "size": 1}))).await;
        assert_eq!(r["reason"], "protocol");

        // Nothing under a final name; the connection still serves.
        assert!(names_in(t.out()).iter().all(|n| n.starts_with(".enchufe-")));
        let reply: String = client.request("hola").await.unwrap();
        assert_eq!(reply, "echo:hola");
        t.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_full_disk_is_typed_and_leaves_no_file() {
    let Some(disk) = Tmpfs::mount(2 << 20) else {
        return;
    };
    bounded(async {
        let mut t = Fixture::at(disk.path(), Default::default(), Profile::Multiplexed).await;
        let file = t.file("lleno.bin", 6 << 20, 18);
        let client = t.client().await;
        let err = Upload::file(&file)
            .await
            .unwrap()
            .send(&client)
            .await
            .unwrap_err();
        assert!(err.is_storage_full(), "{err}");
        assert_eq!(err.reason(), Some(Reason::StorageFull));
        assert!(ended(&mut t.events).await.unwrap_err().is_storage_full());
        assert!(names_in(disk.path()).is_empty());
        small_transfer_works(&client, disk.path(), "cabe.txt").await;
        t.stop().await;
    })
    .await;
}

/// A leftover partial file of `len` bytes for a fresh id, last written
/// `age` ago; its name.
fn leftover(dir: &Path, len: usize, age: Duration) -> String {
    let name = format!(".enchufe-{}.part", TransferId::random());
    let file = std::fs::File::create(dir.join(&name)).unwrap();
    std::io::Write::write_all(&mut &file, &vec![7; len]).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
    name
}

#[tokio::test]
async fn leftovers_past_their_age_or_the_total_size_go_at_the_next_offer() {
    bounded(async {
        let config = receiver::Config::default()
            .max_part_age(Duration::from_secs(3600))
            .max_part_bytes(10 << 10);
        let t = Fixture::new(config, Profile::Plain).await;
        let min = |m: u64| Duration::from_secs(60 * m);
        let too_old = leftover(t.out(), 1 << 10, min(120));
        let oldest = leftover(t.out(), 6 << 10, min(30));
        let kept = [
            leftover(t.out(), 6 << 10, min(20)),
            leftover(t.out(), 3 << 10, min(10)),
        ];
        // Not a partial file: never touched, however old.
        let other = t.out().join("otro.txt");
        std::fs::write(&other, "mío").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(SystemTime::now() - min(600))
            .unwrap();
        assert_eq!(names_in(t.out()).len(), 5);

        // An offer prunes: past the age, then the oldest until the rest
        // hold at most 10 KiB (6 + 3).
        let client = t.client().await;
        small_transfer_works(&client, t.out(), "nuevo.txt").await;
        let mut expected = vec![kept[0].clone(), kept[1].clone()];
        expected.extend(["nuevo.txt".to_owned(), "otro.txt".to_owned()]);
        expected.sort();
        assert_eq!(names_in(t.out()), expected);
        assert!(!t.out().join(too_old).exists() && !t.out().join(oldest).exists());
        t.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_full_disk_evicts_old_leftovers_before_failing_an_upload() {
    let Some(disk) = Tmpfs::mount(8 << 20) else {
        return;
    };
    bounded(async {
        // A 5 MiB leftover, well within the default age and size limits,
        // and a 4 MiB upload: together they do not fit in 8 MiB.
        let t = Fixture::at(disk.path(), Default::default(), Profile::Multiplexed).await;
        let old = leftover(disk.path(), 5 << 20, Duration::from_secs(60));
        let file = t.file("honesto.bin", 4 << 20, 19);
        let client = t.client().await;
        let receipt = Upload::file(&file)
            .await
            .unwrap()
            .send(&client)
            .await
            .unwrap();
        assert_eq!(receipt.size, 4 << 20);
        assert_same_file(&disk.path().join("honesto.bin"), &file);
        assert!(!disk.path().join(old).exists());
        assert_eq!(names_in(disk.path()), ["honesto.bin"]);
        t.stop().await;
    })
    .await;
}

/// `len` bytes where the byte at offset `i` is `i % 251`: any window of it
/// says where in the stream it came from, and making it costs a copy.
struct Counting {
    pos: u64,
    len: u64,
    block: Vec<u8>,
}

impl Counting {
    fn new(len: u64) -> Counting {
        // 251 × 4096 bytes: a slice of it starting at `pos % 251` holds the
        // next bytes of the stream, whatever `pos` is.
        let block = (0..251 * 4096u32).map(|i| (i % 251) as u8).collect();
        Counting { pos: 0, len, block }
    }
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let start = (self.pos % 251) as usize;
        let n = (self.len - self.pos)
            .min(buf.remaining() as u64)
            .min((self.block.len() - start) as u64) as usize;
        buf.put_slice(&self.block[start..start + n]);
        self.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// The course notes that its 4-byte size caps a file at 4 GiB; the transfer
/// protocol's chunks carry 64-bit offsets, so a larger one goes through.
/// 4 GiB and 3 MiB and 5 bytes, not a whole number of chunks, past
/// `u32::MAX`; the receiver's hash check covers every byte, and bytes read
/// back past 4 GiB are the ones sent there. Not fsynced (`sync(false)`):
/// the test is about offsets, not the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_4_gib_goes_through_whole() {
    let len: u64 = (4u64 << 30) + (3 << 20) + 5;
    // Writing 4 GiB through a debug build takes longer than the usual limit.
    let limit = Duration::from_secs(600);
    tokio::time::timeout(limit, async {
        let config = receiver::Config::default()
            .max_file_size(8u64 << 30)
            .sync(false);
        let t = Fixture::new(config, Profile::Multiplexed).await;
        let client = t.client().await;
        let receipt = Upload::reader(Counting::new(len), "grande.bin", len)
            .send(&client)
            .await
            .unwrap();
        assert_eq!((receipt.size, receipt.resumed_from), (len, 0));

        let path = t.out().join("grande.bin");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        for at in [u64::from(u32::MAX) - 2, 4u64 << 30, len - 100] {
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(at)).await.unwrap();
            let mut got = vec![0u8; 100];
            file.read_exact(&mut got).await.unwrap();
            let want: Vec<u8> = (at..at + 100).map(|i| (i % 251) as u8).collect();
            assert_eq!(got, want, "bytes at offset {at}");
        }
        drop(file);
        std::fs::remove_file(&path).unwrap();
        t.stop().await;
    })
    .await
    .expect("the 4 GiB transfer did not finish within its limit");
}

#[tokio::test]
async fn a_directory_is_refused_as_an_upload_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let err = Upload::file(dir.path()).await.unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err}");
}
