//! Interoperability with the Python sockets course, byte for byte.
//!
//! The course's `Server` and `Client` classes frame every message as a
//! 4-byte big-endian length followed by the UTF-8 payload. These tests prove
//! that enchufe speaks exactly that wire format, in both directions, against
//! two standard-library-only Python scripts that follow the course code:
//!
//! - `tests/interop/course_server.py`: threaded echo server; pushes a
//!   greeting on connect, answers `"echo:" + msg` to every non-empty message,
//!   prints `PORT <n>`, then `CLOSED <frames>` per client, then `DONE`.
//! - `tests/interop/course_client.py`: sends a JSON list of messages back to
//!   back, waits for `--expect` frames, half-closes, reads until EOF and
//!   prints `{"received": [...], "eof": true}`.
//!
//! What is covered:
//!
//! 1. enchufe [`Client`] against the Python server (IPv4 and IPv6): the
//!    greeting via `recv`, pipelined `send`s, sequential `request`s,
//!    non-ASCII text, an empty frame, a 5 MiB message, half-close, and the
//!    server's own account of how many frames it received.
//! 2. The Python client against an enchufe [`Server`]: greeting, replies in
//!    order, an empty message that gets no reply, a 5 MiB message, and the
//!    server seeing the client's half-close (`Disconnect::PeerClosed`).
//! 3. Raw bytes, with no framing code on the test's side: a plain
//!    `TcpStream` against an enchufe server, and an enchufe client against a
//!    plain `TcpListener`.
//! 4. Five Python clients connected at the same time to one enchufe server.
//! 5. Profiles: enchufe's client pins the plain profile for the course's
//!    server; in its default (multiplexed) profile it is told at connect
//!    that the course's server speaks the plain one, never handed the
//!    greeting as a reply. The enchufe server's default profile (automatic)
//!    serves the course's client as plain, one that sends first and one
//!    that waits for the greeting alike.
//!
//! Every test is bounded (60 s overall, `--timeout 30` for the scripts) and
//! uses only loopback addresses with port 0. The tests need `python3` on the
//! `PATH` (standard library only); without it they fail, they never skip.
//!
//! Run them with:
//!
//! ```text
//! cargo test --test interop
//! ```

mod common;

use common::interop::{
    assert_same_text, big_text, bounded, spawn_python, wait_until, SCRIPT_TIMEOUT,
};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enchufe::server::{Disconnect, ServerHandle};
use enchufe::{Client, Connection, Handler, Profile, Server};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout};
use tokio::sync::Barrier;

/// How long the Python server may take to print its `PORT` line.
const PORT_LINE_LIMIT: Duration = Duration::from_secs(20);

const GREETING: &str = "¡Bienvenido al servidor del curso! ñandú 🦀";

// ---------------------------------------------------------------------------
// Helpers

/// The client's plain profile: what the course's classes speak (enchufe's
/// client defaults to the multiplexed one).
fn plain() -> enchufe::client::Config {
    enchufe::client::Config::default().profile(Profile::Plain)
}
// ---------------------------------------------------------------------------

/// `"echo:" + msg`, the course server's reply.
fn echo(msg: &str) -> String {
    format!("echo:{msg}")
}

/// Compares two lists of possibly huge strings, element by element.
fn assert_same_texts(actual: &[String], expected: &[String], what: &str) {
    let short = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|s| {
                if s.len() > 80 {
                    format!("<{} bytes>", s.len())
                } else {
                    s.clone()
                }
            })
            .collect()
    };
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: got {:?}, expected {:?}",
        short(actual),
        short(expected)
    );
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_same_text(a, e, &format!("{what}, item {i}"));
    }
}

/// Waits until the server has no connection left and `expected` connections
/// have reported their disconnect, then checks each was a clean half-close
/// by the client.
async fn assert_all_clients_half_closed(
    server: &ServerHandle,
    handler: &CourseEcho,
    expected: usize,
) {
    wait_until("connection_count() to drop to 0", || {
        server.connection_count() == 0
    })
    .await;
    wait_until("every on_disconnect to run", || {
        handler.disconnects().len() >= expected
    })
    .await;
    assert_eq!(
        handler.disconnects(),
        vec!["PeerClosed".to_owned(); expected],
        "the server should see each client's half-close as a clean PeerClosed"
    );
    assert_eq!(handler.connects.load(Ordering::SeqCst), expected);
}

// --- the Python course server ---------------------------------------------

/// A running `course_server.py`, with its stdout read line by line.
struct CourseServer {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl CourseServer {
    async fn start(host: &str, greeting: &str, max_clients: usize) -> CourseServer {
        let max_clients = max_clients.to_string();
        let mut child = spawn_python(
            "course_server.py",
            &[
                "--host",
                host,
                "--port",
                "0",
                "--greeting",
                greeting,
                "--max-clients",
                &max_clients,
                "--timeout",
                SCRIPT_TIMEOUT,
            ],
        );
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stdout = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(PORT_LINE_LIMIT, stdout.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!("course_server.py printed no PORT line within {PORT_LINE_LIMIT:?}")
            })
            .expect("reading course_server.py's stdout");
        let Some(line) = line else {
            let output = child.wait_with_output().await.expect("course_server.py");
            panic!(
                "course_server.py exited ({}) before printing PORT; stderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("expected `PORT <n>` first, got {line:?}"));
        assert_ne!(port, 0, "the server must report its real port");
        CourseServer {
            child,
            stdout,
            port,
        }
    }

    fn addr(&self, host: &str) -> SocketAddr {
        let ip: IpAddr = host.parse().expect("host is an IP literal");
        SocketAddr::new(ip, self.port)
    }

    /// Reads the rest of stdout, waits for the process, and checks that it
    /// printed exactly `expected` after `PORT` and exited 0.
    async fn finish(mut self, expected: &[String]) {
        let mut lines = Vec::new();
        while let Some(line) = self
            .stdout
            .next_line()
            .await
            .expect("reading course_server.py's stdout")
        {
            lines.push(line);
        }
        let output = self
            .child
            .wait_with_output()
            .await
            .expect("waiting for course_server.py");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            lines, expected,
            "course_server.py's stdout after PORT; stderr:\n{stderr}"
        );
        assert_exit_ok(output.status, "course_server.py", &stderr);
    }
}

fn assert_exit_ok(status: ExitStatus, who: &str, stderr: &str) {
    assert!(
        status.success(),
        "{who} exited with {status}; stderr:\n{stderr}"
    );
}

// --- the Python course client ----------------------------------------------

/// The one JSON line `course_client.py` prints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientReport {
    received: Vec<String>,
    eof: bool,
}

/// Runs `course_client.py` to completion: sends `messages` back to back,
/// waits for `expect` frames, half-closes, reads to EOF. Checks that it
/// exited 0 and printed exactly one JSON line, and returns that line.
async fn run_course_client(
    tag: &str,
    host: &str,
    port: u16,
    messages: &[String],
    expect: usize,
) -> ClientReport {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("interop-{tag}-{}.json", std::process::id()));
    let json = serde_json::to_vec(messages).expect("messages to JSON");
    std::fs::write(&file, json).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));

    let port = port.to_string();
    let expect = expect.to_string();
    let file_arg = file.to_str().expect("temp path is UTF-8");
    let child = spawn_python(
        "course_client.py",
        &[
            "--host",
            host,
            "--port",
            &port,
            "--messages",
            file_arg,
            "--expect",
            &expect,
            "--timeout",
            SCRIPT_TIMEOUT,
        ],
    );
    let output = child
        .wait_with_output()
        .await
        .expect("waiting for course_client.py");
    let _ = std::fs::remove_file(&file);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_exit_ok(output.status, &format!("course_client.py ({tag})"), &stderr);
    let stdout = String::from_utf8(output.stdout).expect("course_client.py prints UTF-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "course_client.py ({tag}) must print exactly one line; stderr:\n{stderr}"
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| {
        panic!(
            "course_client.py ({tag}) printed invalid JSON ({e}): {:.200}",
            lines[0]
        )
    })
}

// --- the enchufe server's handler --------------------------------------------

/// The course's echo server written as an enchufe [`Handler`]: pushes a
/// greeting on connect, answers `"echo:" + msg`, and, like the course, gives
/// no reply to an empty message. Records how each connection ended.
#[derive(Clone, Default)]
struct CourseEcho {
    greeting: Option<String>,
    /// When set, every connection waits here before greeting, so the test
    /// knows that many clients were connected at the same time.
    all_connected: Option<Arc<Barrier>>,
    connects: Arc<AtomicUsize>,
    disconnect_reasons: Arc<Mutex<Vec<String>>>,
}

impl CourseEcho {
    fn disconnects(&self) -> Vec<String> {
        self.disconnect_reasons.lock().unwrap().clone()
    }
}

impl Handler for CourseEcho {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn on_connect(&self, conn: &Connection) {
        self.connects.fetch_add(1, Ordering::SeqCst);
        if let Some(barrier) = &self.all_connected {
            barrier.wait().await;
        }
        if let Some(greeting) = &self.greeting {
            conn.push(greeting.clone())
                .await
                .expect("pushing the greeting");
        }
    }

    async fn handle(&self, msg: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        if msg.is_empty() {
            Ok(None)
        } else {
            Ok(Some(format!("echo:{msg}")))
        }
    }

    async fn on_disconnect(&self, _conn: &Connection, reason: &Disconnect) {
        self.disconnect_reasons
            .lock()
            .unwrap()
            .push(format!("{reason:?}"));
    }
}

// ---------------------------------------------------------------------------
// 1 & 2. enchufe Client -> Python course Server
// ---------------------------------------------------------------------------

async fn enchufe_client_against_course_server(host: &str) {
    let server = CourseServer::start(host, GREETING, 1).await;
    let addr = server.addr(host);
    // The course's server speaks only the plain profile: pinned.
    let client = Client::connect_with(addr, plain())
        .await
        .unwrap_or_else(|e| panic!("connecting to the course server at {addr}: {e}"));
    assert_eq!(client.peer_addr(), Some(addr));
    let mut frames_sent = 0;

    // The greeting is pushed on connect; nothing was requested yet, so it is
    // an unsolicited message.
    let greeting: Option<String> = client.recv().await.expect("receiving the greeting");
    assert_eq!(greeting.as_deref(), Some(GREETING));

    // Pipelined: every send is queued before any reply is read. The empty
    // message is counted by the server but gets no reply.
    let pipelined = ["hola", "ñandú 🦀", "", "añoranza", "¿qué tal? €"];
    for msg in pipelined {
        client
            .send(msg)
            .await
            .unwrap_or_else(|e| panic!("sending {msg:?}: {e}"));
        frames_sent += 1;
    }
    let expected: Vec<String> = pipelined
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| echo(m))
        .collect();
    let mut replies = Vec::new();
    for _ in 0..expected.len() {
        let reply: Option<String> = client.recv().await.expect("receiving a reply");
        replies.push(reply.expect("the server closed before replying to everything"));
    }
    assert_eq!(replies, expected, "pipelined replies, in order");

    // Sequential request/reply.
    for msg in ["añoranza", "ñandú 🦀", "x"] {
        let reply: String = client
            .request(msg)
            .await
            .unwrap_or_else(|e| panic!("request {msg:?}: {e}"));
        frames_sent += 1;
        assert_eq!(reply, echo(msg));
    }

    // One message of several MiB, far bigger than the server's 4 KiB reads.
    let big = big_text("cliente enchufe", 5 * 1024 * 1024);
    let reply: String = client
        .request(big.as_str())
        .await
        .expect("request with a 5 MiB message");
    frames_sent += 1;
    assert_same_text(&reply, &echo(&big), "reply to the 5 MiB message");

    // Half-close: the server reads EOF, closes its side, and recv ends.
    client.close().await.expect("half-closing");
    let last: Option<String> = client.recv().await.expect("recv after half-close");
    assert_eq!(last, None, "nothing may arrive after the last reply");
    assert!(
        client.send("too late").await.is_err(),
        "send after close must fail"
    );

    server
        .finish(&[format!("CLOSED {frames_sent}"), "DONE".to_owned()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enchufe_client_exchanges_greeting_pipelined_unicode_and_5mib_with_python_course_server_ipv4(
) {
    bounded(
        "enchufe client vs Python course server over IPv4",
        enchufe_client_against_course_server("127.0.0.1"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enchufe_client_exchanges_greeting_pipelined_unicode_and_5mib_with_python_course_server_ipv6(
) {
    bounded(
        "enchufe client vs Python course server over IPv6",
        enchufe_client_against_course_server("::1"),
    )
    .await;
}

// ---------------------------------------------------------------------------
// 3. Python course Client -> enchufe Server
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_course_client_gets_greeting_ordered_echoes_and_eof_from_enchufe_server() {
    bounded(
        "Python course client vs enchufe server",
        python_course_client_against_enchufe_server(),
    )
    .await;
}

async fn python_course_client_against_enchufe_server() {
    let handler = CourseEcho {
        greeting: Some(GREETING.to_owned()),
        ..CourseEcho::default()
    };
    let server = Server::bind("127.0.0.1:0")
        .await
        .expect("binding the enchufe server")
        .serve(handler.clone());
    let port = server.local_addr().port();

    let big = big_text("cliente python", 5 * 1024 * 1024);
    let messages: Vec<String> = ["hola", "", "ñandú 🦀", "añoranza", big.as_str(), "", "fin"]
        .map(str::to_owned)
        .to_vec();
    let mut expected = vec![GREETING.to_owned()];
    expected.extend(messages.iter().filter(|m| !m.is_empty()).map(|m| echo(m)));

    let report = run_course_client("single", "127.0.0.1", port, &messages, expected.len()).await;
    assert_same_texts(&report.received, &expected, "frames the Python client got");
    assert!(report.eof, "the Python client must see a clean EOF");

    assert_all_clients_half_closed(&server, &handler, 1).await;
    server.shutdown().await;
}

/// Collects what a client sends and answers once, when it has finished
/// sending: the course's half-close pattern.
struct Gather;

impl Handler for Gather {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn handle(&self, msg: String, conn: &Connection) -> Result<Option<String>, Infallible> {
        conn.with_state(|all: &mut Vec<String>| all.push(msg));
        Ok(None)
    }

    async fn on_eof(&self, conn: &Connection) -> Option<String> {
        let all = conn.with_state(|all: &mut Vec<String>| all.join(" "));
        Some(format!("recibido: {all}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_that_half_closes_gets_the_answer_to_all_it_sent() {
    bounded("Python client half-closes, enchufe answers", async {
        let server = Server::bind("127.0.0.1:0").await.unwrap().serve(Gather);
        let port = server.local_addr().port();
        let messages: Vec<String> = ["uno", "dos", "ñandú"].map(str::to_owned).to_vec();
        // --expect 0: send everything, shutdown(SHUT_WR), read until EOF.
        let report = run_course_client("half-close", "127.0.0.1", port, &messages, 0).await;
        assert_eq!(report.received, ["recibido: uno dos ñandú"]);
        assert!(report.eof, "the answer comes before the server's goodbye");
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// 4. Raw bytes, no framing code on the test's side
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tcp_bytes_to_enchufe_server_get_byte_exact_framed_echo() {
    bounded(
        "raw TCP client vs enchufe server",
        raw_tcp_against_enchufe_server(),
    )
    .await;
}

async fn raw_tcp_against_enchufe_server() {
    let handler = CourseEcho::default(); // no greeting: only replies on the wire
    let server = Server::bind("127.0.0.1:0")
        .await
        .expect("binding the enchufe server")
        .serve(handler.clone());
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("raw connect");

    // "hola" -> "echo:hola"
    stream
        .write_all(&[0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x6c, 0x61])
        .await
        .expect("writing the hola frame");
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .expect("reading the reply's header");
    assert_eq!(header, [0x00, 0x00, 0x00, 0x09], "length 9");
    let mut body = [0u8; 9];
    stream
        .read_exact(&mut body)
        .await
        .expect("reading the reply's body");
    assert_eq!(
        body,
        [
            0x65, 0x63, 0x68, 0x6f, 0x3a, // "echo:"
            0x68, 0x6f, 0x6c, 0x61, // "hola"
        ]
    );

    // An empty frame (no reply), then "ñandú 🦀" (12 UTF-8 bytes) split in
    // the middle of its header; only the second one is answered.
    stream
        .write_all(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        .await
        .expect("writing the empty frame and half a header");
    stream
        .write_all(&[
            0x00, 0x0c, // rest of the length: 12
            0xc3, 0xb1, 0x61, 0x6e, 0x64, 0xc3, 0xba, // "ñandú"
            0x20, 0xf0, 0x9f, 0xa6, 0x80, // " 🦀"
        ])
        .await
        .expect("writing the rest of the ñandú frame");
    // Half-close: the server answers what it read, then closes; everything
    // it sends until EOF must be exactly one frame.
    stream
        .shutdown()
        .await
        .expect("half-closing the raw stream");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("reading to EOF");
    assert_eq!(
        rest,
        [
            0x00, 0x00, 0x00, 0x11, // length 17
            0x65, 0x63, 0x68, 0x6f, 0x3a, // "echo:"
            0xc3, 0xb1, 0x61, 0x6e, 0x64, 0xc3, 0xba, // "ñandú"
            0x20, 0xf0, 0x9f, 0xa6, 0x80, // " 🦀"
        ]
    );

    assert_all_clients_half_closed(&server, &handler, 1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enchufe_client_writes_byte_exact_frames_to_raw_tcp_listener() {
    bounded(
        "enchufe client vs raw TCP listener",
        enchufe_client_against_raw_listener(),
    )
    .await;
}

async fn enchufe_client_against_raw_listener() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the raw listener");
    let addr = listener.local_addr().expect("listener address");
    let client = Client::connect_with(addr, plain())
        .await
        .expect("enchufe connect");
    let (mut stream, _) = listener.accept().await.expect("accepting");

    client.send("hola").await.expect("sending hola");
    let mut frame = [0u8; 8];
    stream
        .read_exact(&mut frame)
        .await
        .expect("reading the hola frame");
    assert_eq!(frame, [0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x6c, 0x61]);

    // An empty message, then non-ASCII; after the half-close the stream must
    // end right after them.
    client.send("").await.expect("sending an empty message");
    client.send("ñandú 🦀").await.expect("sending ñandú");
    client.close().await.expect("half-closing");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("reading to EOF");
    assert_eq!(
        rest,
        [
            0x00, 0x00, 0x00, 0x00, // empty frame
            0x00, 0x00, 0x00, 0x0c, // length 12
            0xc3, 0xb1, 0x61, 0x6e, 0x64, 0xc3, 0xba, // "ñandú"
            0x20, 0xf0, 0x9f, 0xa6, 0x80, // " 🦀"
        ]
    );

    // The reverse direction still works after the half-close: a hand-made
    // frame arrives through recv, then EOF.
    stream
        .write_all(&[
            0x00, 0x00, 0x00, 0x09, 0x65, 0x63, 0x68, 0x6f, 0x3a, 0x68, 0x6f, 0x6c, 0x61,
        ])
        .await
        .expect("writing echo:hola");
    stream.shutdown().await.expect("closing the raw stream");
    let reply: Option<String> = client.recv().await.expect("recv echo:hola");
    assert_eq!(reply.as_deref(), Some("echo:hola"));
    let end: Option<String> = client.recv().await.expect("recv at EOF");
    assert_eq!(end, None);
}

// ---------------------------------------------------------------------------
// 5. Several Python course Clients at once -> one enchufe Server
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_concurrent_python_course_clients_each_get_their_own_echoes_from_enchufe_server() {
    bounded(
        "five Python course clients vs one enchufe server",
        concurrent_python_clients_against_enchufe_server(5),
    )
    .await;
}

async fn concurrent_python_clients_against_enchufe_server(clients: usize) {
    // Nobody is greeted until all clients are connected, which proves they
    // were served at the same time (a missing one would stall the test).
    let handler = CourseEcho {
        greeting: Some(GREETING.to_owned()),
        all_connected: Some(Arc::new(Barrier::new(clients))),
        ..CourseEcho::default()
    };
    let server = Server::bind("127.0.0.1:0")
        .await
        .expect("binding the enchufe server")
        .serve(handler.clone());
    let port = server.local_addr().port();

    let runs = (0..clients).map(|i| async move {
        let tag = format!("concurrent-{i}");
        let messages: Vec<String> = vec![
            format!("cliente {i}: hola"),
            String::new(),
            format!("cliente {i}: ñandú 🦀"),
            big_text(&format!("cliente {i}"), 1024 * 1024),
            format!("cliente {i}: adiós"),
        ];
        let mut expected = vec![GREETING.to_owned()];
        expected.extend(messages.iter().filter(|m| !m.is_empty()).map(|m| echo(m)));
        let report = run_course_client(&tag, "127.0.0.1", port, &messages, expected.len()).await;
        (tag, report, expected)
    });
    for (tag, report, expected) in futures::future::join_all(runs).await {
        assert_same_texts(
            &report.received,
            &expected,
            &format!("frames Python client {tag} got"),
        );
        assert!(report.eof, "Python client {tag} must see a clean EOF");
    }

    assert_all_clients_half_closed(&server, &handler, clients).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// 5. Profiles: defaults that cannot pair a push with a request
// ---------------------------------------------------------------------------

/// enchufe's client in its default profile (multiplexed) at the course's
/// server: the server greets and answers our hello with `echo:ENCH...`.
/// Before profiles were checked, a plain client got the greeting as the
/// reply to its first request; now connecting fails, typed, and says which
/// setting to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enchufe_default_client_at_the_python_course_server_fails_at_connect_with_a_profile_mismatch(
) {
    bounded("default client vs Python course server", async {
        let server = CourseServer::start("127.0.0.1", GREETING, 1).await;
        let err = Client::connect(server.addr("127.0.0.1"))
            .await
            .expect_err("the course's server speaks only the plain profile");
        assert!(
            err.mismatch() == Some(enchufe::framing::mux::Mismatch::NotAHello),
            "{err:?}"
        );
        assert!(err.is_profile_mismatch());
        assert!(err.to_string().contains("Profile::Plain"), "{err}");
        // The course's server read one frame (our hello) and saw us leave.
        server
            .finish(&["CLOSED 1".to_owned(), "DONE".to_owned()])
            .await;
    })
    .await;
}

/// The course's client that sends nothing and waits for the greeting (an
/// interactive session before the user types) against an enchufe server in
/// its default profile: after `detect_timeout` without a frame the server
/// takes it for plain and greets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_course_client_that_waits_for_the_greeting_gets_it_from_the_default_server() {
    bounded("silent Python client vs default enchufe server", async {
        let handler = CourseEcho {
            greeting: Some(GREETING.to_owned()),
            ..CourseEcho::default()
        };
        let server = Server::bind("127.0.0.1:0")
            .await
            .expect("binding the enchufe server")
            .serve(handler.clone());
        let port = server.local_addr().port();
        let report = run_course_client("silent", "127.0.0.1", port, &[], 1).await;
        assert_same_texts(&report.received, &[GREETING.to_owned()], "the greeting");
        assert!(report.eof);
        assert_all_clients_half_closed(&server, &handler, 1).await;
        server.shutdown().await;
    })
    .await;
}
