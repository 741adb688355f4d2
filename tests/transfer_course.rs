//! The course's improved file protocol (4-byte big-endian size, the raw
//! body, `Gracias.` back) against Python scripts written in the course's
//! style, and its bad input.
//!
//! - `tests/interop/course_file_sender.py` → enchufe's receiver
//!   (`transfer::course::Receiver`, what `file_transfer recv --course`
//!   runs), and enchufe's sender (`course::send`) →
//!   `course_file_receiver.py`: 64 MiB each way, byte-identical.
//! - Half-close: a sender that shuts down writing after the body (Python's
//!   `shutdown(SHUT_WR)`, and a raw Rust socket) still gets `Gracias.`.
//! - Bad input: a size over the limit, a body cut short, a bad name, a full
//!   disk; each a typed error, no file under the final name, and the
//!   receiver goes on to serve the next sender.
//! - Senders are served at once: one that trickles does not hold up an
//!   honest one (its deadline and the connection cap are tested in paused
//!   time in `crates/transfer/src/course/server.rs`); `send_file` names a missing file before connecting, and is told
//!   in words when the receiver could not store its file.
//! - Lesson 6 of docs/COURSE.md, as written: the `file_transfer` example's
//!   `recv --course` into a directory that does not exist, and `send`.
//!
//! ```text
//! cargo test --test transfer_course
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::examples::built_examples;
use common::files::{assert_same_file, names_in, random_file, Tmpfs};
use common::interop::{bounded, spawn_python, SCRIPT_TIMEOUT};
use enchufe::transfer::{course, Error, Event, Reason};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

const BIG: u64 = 64 << 20;

/// Each sender's end: its file, or why it has none.
type Ended = Result<PathBuf, Arc<Error>>;

/// A `course::Receiver` (what `file_transfer recv --course` runs) on
/// `127.0.0.1:0`, and a task that collects how the first `senders` senders
/// ended, in the order they connected (`recibido-N.bin`).
async fn receiver(
    dir: &Path,
    config: course::Config,
    senders: usize,
) -> (String, tokio::task::JoinHandle<Vec<Ended>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let receiver = course::Receiver::new(dir, config);
    let mut events = receiver.events();
    receiver.serve(listener);
    let task = tokio::spawn(async move {
        let mut ended = Vec::new();
        while ended.len() < senders {
            ended.push(next_end(&mut events).await);
        }
        receiver.shutdown().await;
        ended.sort_by_key(|(name, _)| number_of(name));
        ended.into_iter().map(|(_, r)| r).collect()
    });
    (port, task)
}

/// N of `recibido-N.bin`.
fn number_of(name: &str) -> u64 {
    let n = name
        .strip_prefix("recibido-")
        .and_then(|n| n.strip_suffix(".bin"));
    n.unwrap().parse().unwrap()
}

/// The next sender's end, with its file's name.
async fn next_end(events: &mut broadcast::Receiver<Event>) -> (String, Ended) {
    loop {
        match events.recv().await.unwrap() {
            Event::Finished { path, .. } => {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                return (name, Ok(path));
            }
            Event::Failed { name, error, .. } => return (name, Err(error)),
            _ => {}
        }
    }
}

async fn python_sender(port: &str, file: &Path, shutdown: bool) -> String {
    let file = file.to_str().unwrap();
    let mut args = vec!["--port", port, "--file", file, "--timeout", SCRIPT_TIMEOUT];
    if shutdown {
        args.push("--shutdown");
    }
    let out = spawn_python("course_file_sender.py", &args)
        .wait_with_output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python sender: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn python_sender_to_enchufe_receiver_64_mib() {
    bounded("python_sender_to_enchufe_receiver_64_mib", async {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = random_file(src.path(), "enviar.bin", BIG, 1);
        let (port, task) = receiver(out.path(), course::Config::default(), 1).await;
        let stdout = python_sender(&port, &file, false).await;
        assert_eq!(stdout.trim(), "Respuesta: Gracias.");
        let received = task.await.unwrap().remove(0).unwrap();
        assert_same_file(&received, &file);
        assert_eq!(names_in(out.path()), ["recibido-1.bin"]);
    })
    .await;
}

#[tokio::test]
async fn enchufe_sender_to_python_receiver_64_mib() {
    bounded("enchufe_sender_to_python_receiver_64_mib", async {
        let src = tempfile::tempdir().unwrap();
        let file = random_file(src.path(), "enviar.bin", BIG, 2);
        let out = src.path().join("recibido.bin");
        let mut python = spawn_python(
            "course_file_receiver.py",
            &["--out", out.to_str().unwrap(), "--timeout", SCRIPT_TIMEOUT],
        );
        let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
        let port_line = lines.next_line().await.unwrap().expect("PORT line");
        let port = port_line.strip_prefix("PORT ").expect("PORT line");

        let mut stream = TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let source = tokio::fs::File::open(&file).await.unwrap();
        let reply = course::send(&mut stream, source, BIG, &Default::default(), None)
            .await
            .unwrap();
        assert_eq!(reply, course::THANKS);
        assert_eq!(
            lines.next_line().await.unwrap().unwrap(),
            format!("RECIBIDO {BIG}")
        );
        assert!(python.wait().await.unwrap().success());
        assert_same_file(&out, &file);
    })
    .await;
}

#[tokio::test]
async fn half_closed_senders_still_get_gracias() {
    bounded("half_closed_senders_still_get_gracias", async {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = random_file(src.path(), "enviar.bin", 3 << 20, 3);
        let (port, task) = receiver(out.path(), course::Config::default(), 2).await;

        // Python: shutdown(SHUT_WR) after the body, then recv.
        let stdout = python_sender(&port, &file, true).await;
        assert_eq!(stdout.trim(), "Respuesta: Gracias.");

        // A raw socket: header, body, shutdown, then read to EOF.
        let mut stream = TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        stream.write_all(&5u32.to_be_bytes()).await.unwrap();
        stream.write_all(b"hola!").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"Gracias.");

        let results = task.await.unwrap();
        assert_same_file(results[0].as_ref().unwrap(), &file);
        assert_eq!(
            std::fs::read(results[1].as_ref().unwrap()).unwrap(),
            b"hola!"
        );
    })
    .await;
}

/// Sends raw bytes, half-closes, and returns whatever the receiver answers
/// before closing.
async fn raw_exchange(port: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    // The receiver may close before reading everything (a size over the
    // limit): a failed write is part of the answer, not of the test.
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    reply
}

fn course_message(size: u32, body: &[u8]) -> Vec<u8> {
    let mut m = size.to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

#[tokio::test]
async fn bad_input_is_typed_and_leaves_no_file() {
    bounded("bad_input_is_typed_and_leaves_no_file", async {
        let out = tempfile::tempdir().unwrap();
        let config = course::Config::default().max_size(1 << 20);
        let (port, task) = receiver(out.path(), config, 4).await;

        // 1. Declared over max_size: refused on the header.
        assert_eq!(
            raw_exchange(&port, &course_message(2 << 20, b"x")).await,
            b""
        );
        // 2. EOF after 10 of 1000 bytes.
        assert_eq!(
            raw_exchange(&port, &course_message(1000, &[7; 10])).await,
            b""
        );
        // 3. An empty header (connect and close).
        assert_eq!(raw_exchange(&port, b"").await, b"");
        // 4. The next sender is served.
        assert_eq!(
            raw_exchange(&port, &course_message(3, b"ok!")).await,
            b"Gracias."
        );

        let results = task.await.unwrap();
        let reasons: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().err().and_then(|e| e.reason()))
            .collect();
        assert_eq!(
            reasons,
            [
                Some(Reason::TooLarge),
                Some(Reason::Truncated),
                Some(Reason::Truncated),
                None
            ]
        );
        assert!(matches!(
            results[1].as_ref().map_err(|e| &**e),
            Err(Error::Truncated {
                expected: 1000,
                received: 10
            })
        ));
        // Only the good one, and no temporary left behind.
        assert_eq!(names_in(out.path()), ["recibido-4.bin"]);
    })
    .await;
}

#[tokio::test]
async fn a_source_shorter_than_its_size_is_typed_after_what_it_gave() {
    bounded("a_source_shorter_than_its_size", async {
        // Over several buffers, so that the sender is reading ahead of
        // what it writes when the source ends.
        let (size, has) = (3 * course::BUFFER as u64, 5 * course::BUFFER as u64 / 2);
        let (mut a, mut b) = tokio::io::duplex(64 << 10);
        let drain = tokio::spawn(async move { tokio::io::copy(&mut b, &mut tokio::io::sink()).await });
        let source = tokio::io::repeat(7).take(has);
        let r = course::send(&mut a, source, size, &Default::default(), None).await;
        assert!(
            matches!(r, Err(Error::SourceEnded { expected, read }) if expected == size && read == has),
            "{r:?}"
        );
        drop(a);
        // The size header and every byte the source gave went out.
        assert_eq!(drain.await.unwrap().unwrap(), 4 + has);
    })
    .await;
}

#[tokio::test]
async fn a_slow_receiver_that_keeps_reading_is_not_an_idle_one() {
    bounded("a_slow_receiver_that_keeps_reading", async {
        // 1 MiB taken 32 KiB every 100 ms: about 3 s for the body, each
        // write waiting about 100 ms, under an idle limit of 2 s that
        // applies to each wait, not to the whole body.
        let size = course::BUFFER as u64;
        let (mut a, mut b) = tokio::io::duplex(32 << 10);
        let drain = tokio::spawn(async move {
            let (mut buf, mut got) = (vec![0; 32 << 10], 0u64);
            loop {
                match b.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got += n as u64,
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        let config = course::Config::default().idle_timeout(std::time::Duration::from_secs(2));
        let sent = async {
            // The reply never comes from this drain; the body is what counts.
            let r =
                course::send(&mut a, tokio::io::repeat(1).take(size), size, &config, None).await;
            drop(a);
            r
        };
        let (r, got) = tokio::join!(sent, drain);
        assert_eq!(got.unwrap(), 4 + size);
        // It got as far as waiting for the reply (EOF: no `Gracias.`).
        assert!(
            !matches!(r, Err(Error::Timeout { what, .. }) if what.contains("body")),
            "{r:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_names_are_refused_before_reading() {
    let out = tempfile::tempdir().unwrap();
    for name in ["", "..", "../x", "a/b", "/etc/passwd", "a\0b", "C:\\x"] {
        let (mut a, _b) = tokio::io::duplex(64);
        let r = course::receive(&mut a, out.path(), name, &Default::default(), None).await;
        assert_eq!(r.unwrap_err().reason(), Some(Reason::BadName), "{name:?}");
    }
    assert!(names_in(out.path()).is_empty());
}

#[tokio::test]
async fn full_disk_is_typed_and_leaves_no_file() {
    let Some(disk) = Tmpfs::mount(1 << 20) else {
        return;
    };
    bounded("full_disk_is_typed_and_leaves_no_file", async {
        let (port, task) = receiver(disk.path(), course::Config::default(), 2).await;
        // 2 MiB into a 1 MiB disk: the write fails with ENOSPC.
        let big = course_message(2 << 20, &vec![1; 2 << 20]);
        assert_eq!(raw_exchange(&port, &big).await, b"");
        // Space is freed with the temporary file: the next one fits.
        assert_eq!(
            raw_exchange(&port, &course_message(4, b"cabe")).await,
            b"Gracias."
        );
        let results = task.await.unwrap();
        let err = results[0].as_ref().unwrap_err();
        assert!(err.is_storage_full(), "{err}");
        assert_eq!(err.reason(), Some(Reason::StorageFull));
        assert_eq!(names_in(disk.path()), ["recibido-2.bin"]);
    })
    .await;
}

/// A sender that declares `size` bytes and then sends one every `every`,
/// until its stream fails; how many it sent.
async fn trickle<S: tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    size: u32,
    every: Duration,
) -> u64 {
    stream.write_all(&size.to_be_bytes()).await.unwrap();
    for sent in 0..u64::from(size) {
        if stream.write_all(b"x").await.is_err() || stream.flush().await.is_err() {
            return sent;
        }
        tokio::time::sleep(every).await;
    }
    u64::from(size)
}

/// The next `Started` event's name.
async fn next_start(events: &mut broadcast::Receiver<Event>) -> String {
    loop {
        if let Event::Started { name, .. } = events.recv().await.unwrap() {
            return name;
        }
    }
}

#[tokio::test]
async fn a_trickling_sender_does_not_hold_up_an_honest_one() {
    bounded("a_trickling_sender_does_not_hold_up_an_honest_one", async {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = random_file(src.path(), "informe.pdf", 3 << 20, 4);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let receiver = course::Receiver::new(out.path(), course::Config::default());
        let mut events = receiver.events();
        receiver.serve(listener);

        // First a sender that declares 1000 bytes and sends 10 a second:
        // within every limit (64 KiB/s after 30 s of grace), for 100 s.
        let trickler = TcpStream::connect(&addr).await.unwrap();
        let trickling = tokio::spawn(trickle(trickler, 1000, Duration::from_millis(100)));
        assert_eq!(next_start(&mut events).await, "recibido-1.bin");

        // Then an honest one: served beside it, not after it.
        let started = std::time::Instant::now();
        let config = course::Config::default();
        let honest = course::send_file(&file, &addr, &config, None);
        let sent = tokio::time::timeout(Duration::from_secs(10), honest).await;
        assert_eq!(sent.expect("held up behind the trickler").unwrap(), 3 << 20);
        println!(
            "honest sender done in {:?} beside a trickler",
            started.elapsed()
        );
        let (name, ended) = next_end(&mut events).await;
        assert_eq!(name, "recibido-2.bin");
        assert_same_file(&ended.unwrap(), &file);
        assert_eq!(receiver.active(), 1, "the trickler is still being served");

        // Shutdown cuts it and removes its temporary file.
        receiver.shutdown().await;
        let (name, ended) = next_end(&mut events).await;
        assert_eq!(name, "recibido-1.bin");
        assert!(matches!(*ended.unwrap_err(), Error::Cancelled));
        assert!(trickling.await.unwrap() < 1000);
        assert_eq!(names_in(out.path()), ["recibido-2.bin"]);
    })
    .await;
}

#[tokio::test]
async fn send_file_names_a_missing_file_before_connecting() {
    bounded("send_file_names_a_missing_file_before_connecting", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let err = course::send_file("no-existe/informe.pdf", &addr, &Default::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.starts_with("cannot open no-existe/informe.pdf: "),
            "{shown}"
        );
        // Nobody connected: the receiver never saw an empty transfer.
        let accept = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(accept.is_err(), "the sender connected");
    })
    .await;
}

#[tokio::test]
async fn a_sender_whose_file_the_receiver_cannot_store_is_told_so() {
    bounded("a_sender_whose_file_the_receiver_cannot_store", async {
        let src = tempfile::tempdir().unwrap();
        // A receiver whose directory is gone: every file fails to store.
        let gone = tempfile::tempdir().unwrap();
        let (port, task) = receiver(&gone.path().join("borrado"), Default::default(), 2).await;
        let addr = format!("127.0.0.1:{port}");
        // Larger than the socket buffers (the receiver closes mid-body), and
        // small enough to be sent whole before it closes.
        for (n, size) in [(5, 8u64 << 20), (6, 10)] {
            let file = random_file(src.path(), "informe.pdf", size, n);
            let err = course::send_file(&file, &addr, &Default::default(), None)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::NotConfirmed { .. }), "{err:?}");
            let shown = err.to_string();
            assert!(
                shown.contains("could not store it (see the receiver's log)"),
                "{shown}"
            );
        }
        for ended in task.await.unwrap() {
            assert_eq!(ended.unwrap_err().reason(), Some(Reason::Storage));
        }
    })
    .await;
}

/// Lesson 6 of docs/COURSE.md and docs/COURSE.en.md, as written, on a
/// machine where `--out` does not exist yet (`--addr` on port 0 here, and
/// `--count 1` so that `recv` exits).
#[tokio::test]
async fn lesson_6_runs_as_written_into_a_new_directory() {
    // Built first, outside the test's time limit: a cold build takes minutes.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = tokio::task::spawn_blocking(|| built_examples(root).join("file_transfer"))
        .await
        .unwrap();
    bounded("lesson_6_runs_as_written_into_a_new_directory", async {
        let src = tempfile::tempdir().unwrap();
        let file = random_file(src.path(), "informe.pdf", 3 << 20, 7);
        let out = src.path().join("in");
        let run = |args: &[&str]| {
            let mut cmd = tokio::process::Command::new(&example);
            cmd.args(args)
                .current_dir(src.path())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            cmd
        };
        let out_arg = out.to_str().unwrap();
        let args = [
            "recv",
            "--addr",
            "127.0.0.1:0",
            "--out",
            out_arg,
            "--course",
            "--count",
            "1",
        ];
        let mut recv = run(&args).spawn().unwrap();
        let mut lines = BufReader::new(recv.stdout.take().unwrap()).lines();
        let listening = lines.next_line().await.unwrap().expect("listening line");
        let addr = listening
            .strip_prefix("listening on ")
            .expect("listening line");

        let send = ["send", "--addr", addr, "--file", "informe.pdf", "--course"];
        let sent = run(&send).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&sent.stdout);
        assert!(
            sent.status.success(),
            "send: {stdout}{}",
            String::from_utf8_lossy(&sent.stderr)
        );
        assert!(stdout.contains("Gracias."), "{stdout}");

        assert!(recv.wait().await.unwrap().success());
        assert_same_file(&out.join("recibido-1.bin"), &file);

        // A missing file is named.
        let missing = ["send", "--addr", addr, "--file", "falta.pdf", "--course"];
        let failed = run(&missing).output().await.unwrap();
        assert!(!failed.status.success());
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(
            stderr.contains("error: cannot open falta.pdf: "),
            "{stderr}"
        );
    })
    .await;
}
