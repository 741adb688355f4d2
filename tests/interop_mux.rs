//! The multiplexed profile against a client written from the spec alone.
//!
//! `tests/interop/mux_client.py` is a standard-library-only Python client
//! written from `docs/PROTOCOL.md` without looking at the Rust sources. These
//! tests run it against a real enchufe [`Server`] configured with
//! [`Profile::Multiplexed`], so every passing test is evidence that the spec
//! alone is complete enough to interoperate with: hello, the 9-byte message
//! header, request ids, out-of-order responses, error frames and their codes,
//! notify, push and the half-close at the end.
//!
//! What is covered:
//!
//! 1. One Python client over IPv4: requests whose handler sleeps longer the
//!    earlier they arrive come back out of order (the `order` field is not
//!    ascending, and the sleeping ones arrive exactly in reverse), each
//!    response matched to its id; a handler error (code 1, with the handler's
//!    text), a panic (code 2), no reply (code 5), an empty body, non-ASCII
//!    text and a ~3 MiB body echoed exactly. Pushes: a greeting from
//!    `on_connect`, then one `seen:<body>` per notify (the handler's return
//!    value for a notify is discarded; had it been sent, the client would
//!    have failed on a reply to id 0). Exact push list, `eof`, exit 0, and
//!    the server saw a clean `PeerClosed`.
//! 2. The same over IPv6 (`::1`), against a server in its default profile
//!    (`Auto`), which the client's hello makes multiplexed.
//! 3. Four Python clients connected at the same time (a barrier in
//!    `on_connect` proves it) each get exactly their own responses and pushes.
//! 4. A server in the PLAIN profile is never mistaken for a multiplexed one.
//!    An enchufe server pinned to `Profile::Plain` closes the connection at
//!    the client's hello, before its handler sees anything (exit 2, closed
//!    before its hello), and counts it; one that greets first fails the
//!    magic check (exit 4). Other plain servers, written by hand here: a
//!    silent one sends no hello, so the client times out (exit 3) after
//!    sending nothing but its hello; an `echo:` reply fails the magic check
//!    (exit 4); one that echoes bytes unchanged bounces the client's own
//!    hello back, which passes (this client ignores the flags), but the
//!    first request then comes back as a request frame and the client stops
//!    with a protocol violation (exit 2). None of them prints a JSON report.
//!
//! Every test is bounded (60 s overall, `--timeout 30` for the script unless
//! a test needs a shorter one) and uses loopback addresses with port 0. The
//! tests need `python3` on the `PATH` (standard library only); without it
//! they fail, they never skip.
//!
//! Run them with:
//!
//! ```text
//! cargo test --test interop_mux
//! ```

mod common;

use common::interop::{
    assert_same_text, big_text, bounded, spawn_python, wait_until, SCRIPT_TIMEOUT,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enchufe::server::{Config, Disconnect, Profile};
use enchufe::{Connection, Handler, Server, ServerHandle};
use serde::Deserialize;
use tokio::sync::Barrier;

const GREETING: &str = "¡Hola! perfil multiplexado, ñandú 🦀";
/// The client's hello as a plain-profile server sees it: a 7-byte message.
const CLIENT_HELLO_AS_TEXT: &str = "ENCH\u{1}\u{0}\u{0}";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A string for messages, shortened when it is huge.
fn short(s: &str) -> String {
    if s.len() > 80 {
        format!("<{} bytes>", s.len())
    } else {
        format!("{s:?}")
    }
}

/// Binds an enchufe server on `addr` (port 0) with `profile` and serves `handler`.
async fn start_server<H: Handler>(addr: &str, profile: Profile, handler: H) -> ServerHandle {
    Server::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("binding the enchufe server on {addr}: {e}"))
        .with_config(Config::default().profile(profile))
        .serve(handler)
}

// --- the Python mux client ---------------------------------------------------

/// The one JSON line `mux_client.py` prints on success.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MuxReport {
    responses: BTreeMap<String, Reply>,
    order: Vec<u64>,
    pushes: Vec<String>,
    eof: bool,
}

/// A response or an error frame, as the Python client reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Reply {
    Ok(String),
    Error(ErrorReply),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorReply {
    code: u8,
    message: String,
}

/// What the test expects for one request.
enum Expect {
    /// A response frame with exactly this body.
    Ok(String),
    /// An error frame with this code and exactly this message.
    Error(u8, String),
    /// An error frame with this code; the message is not checked.
    Code(u8),
}

fn ok(body: impl Into<String>) -> Expect {
    Expect::Ok(body.into())
}

fn shown(reply: &Reply) -> String {
    match reply {
        Reply::Ok(body) => format!("ok {}", short(body)),
        Reply::Error(e) => format!("error {} {}", e.code, short(&e.message)),
    }
}

/// One finished run of `mux_client.py`.
struct Run {
    tag: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Checks exit 0 and exactly one JSON line on stdout, and parses it.
    fn report(&self) -> MuxReport {
        assert_eq!(
            self.code,
            Some(0),
            "mux_client.py ({}) failed; stderr:\n{}",
            self.tag,
            self.stderr
        );
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "mux_client.py ({}) must print exactly one line; stderr:\n{}",
            self.tag,
            self.stderr
        );
        serde_json::from_str(lines[0]).unwrap_or_else(|e| {
            panic!(
                "mux_client.py ({}) printed invalid JSON ({e}): {:.300}",
                self.tag, lines[0]
            )
        })
    }

    /// Checks a failed run: exit `code`, nothing on stdout (no JSON), and
    /// `needle` in its stderr message.
    fn assert_failed(&self, code: i32, needle: &str) {
        assert_eq!(
            self.code,
            Some(code),
            "mux_client.py ({}) should exit {code}; stdout:\n{}\nstderr:\n{}",
            self.tag,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "mux_client.py ({}) must print no JSON when it fails, printed {:.300}",
            self.tag,
            self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "mux_client.py ({}) stderr should mention {needle:?}, was:\n{}",
            self.tag,
            self.stderr
        );
    }
}

/// Writes a JSON list of strings to a temp file named after `tag`.
fn temp_list(tag: &str, what: &str, items: &[String]) -> PathBuf {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "interop-mux-{tag}-{what}-{}.json",
        std::process::id()
    ));
    let json = serde_json::to_vec(items).expect("list to JSON");
    std::fs::write(&file, json).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    file
}

/// Runs `mux_client.py` to completion (killed if the test is dropped) and
/// returns its exit code and output. Fails loudly if `python3` is missing.
async fn run_mux_client(
    tag: &str,
    host: &str,
    port: u16,
    requests: &[String],
    notifies: &[String],
    expect_pushes: usize,
    timeout: &str,
) -> Run {
    let requests_file = temp_list(tag, "requests", requests);
    let notify_file = temp_list(tag, "notify", notifies);
    let port = port.to_string();
    let expect_pushes = expect_pushes.to_string();
    let child = spawn_python(
        "mux_client.py",
        &[
            "--host",
            host,
            "--port",
            &port,
            "--requests",
            &requests_file.to_string_lossy(),
            "--notify",
            &notify_file.to_string_lossy(),
            "--expect-pushes",
            &expect_pushes,
            "--timeout",
            timeout,
        ],
    );
    let output = child
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("waiting for mux_client.py ({tag}): {e}"));
    let _ = std::fs::remove_file(&requests_file);
    let _ = std::fs::remove_file(&notify_file);
    Run {
        tag: tag.to_owned(),
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("mux_client.py prints ASCII JSON"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Checks that every request got exactly what `expected` says under its id
/// (1-based, in the order sent), and that `order` lists each id once.
fn assert_responses(report: &MuxReport, expected: &[Expect], what: &str) {
    let ids: Vec<String> = (1..=expected.len()).map(|i| i.to_string()).collect();
    let got: Vec<&String> = report.responses.keys().collect();
    let mut want: Vec<&String> = ids.iter().collect();
    want.sort();
    assert_eq!(got, want, "{what}: ids answered");
    let mut order = report.order.clone();
    order.sort_unstable();
    assert_eq!(
        order,
        (1..=expected.len() as u64).collect::<Vec<_>>(),
        "{what}: `order` must list every id exactly once, was {:?}",
        report.order
    );
    for (id, expect) in ids.iter().zip(expected) {
        let reply = &report.responses[id];
        let here = format!("{what}, id {id}");
        match (expect, reply) {
            (Expect::Ok(body), Reply::Ok(got)) => assert_same_text(got, body, &here),
            (Expect::Error(code, message), Reply::Error(e)) => {
                assert_eq!(
                    (e.code, e.message.as_str()),
                    (*code, message.as_str()),
                    "{here}: error frame"
                );
            }
            (Expect::Code(code), Reply::Error(e)) => {
                assert_eq!(
                    e.code, *code,
                    "{here}: error code (message {:?})",
                    e.message
                );
            }
            (Expect::Ok(body), other) => {
                panic!("{here}: expected ok {}, got {}", short(body), shown(other))
            }
            (Expect::Error(code, _) | Expect::Code(code), other) => {
                panic!("{here}: expected error code {code}, got {}", shown(other))
            }
        }
    }
}

/// Index of `id` in the arrival order.
fn position(report: &MuxReport, id: u64) -> usize {
    report
        .order
        .iter()
        .position(|&x| x == id)
        .unwrap_or_else(|| panic!("id {id} missing from order {:?}", report.order))
}

fn assert_not_ascending(order: &[u64], what: &str) {
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "{what}: responses should arrive out of order, but `order` is ascending: {order:?}"
    );
}

fn assert_pushes(actual: &[String], expected: &[String], what: &str) {
    let shorts = |v: &[String]| v.iter().map(|s| short(s)).collect::<Vec<_>>();
    assert_eq!(
        actual,
        expected,
        "{what}: pushes (got {:?}, expected {:?})",
        shorts(actual),
        shorts(expected)
    );
}

// --- the enchufe handlers ----------------------------------------------------

/// The multiplexed test handler. Request bodies:
/// - `sleep:<ms>:<word>` answers `<word>` after `<ms>` milliseconds;
/// - `fail:<text>` returns `Err(<text>)` (error code 1);
/// - `panic:<text>` panics with `<text>` (error code 2);
/// - `silent` returns `Ok(None)` (error code 5 for a request);
/// - `note:<text>` pushes `seen:<text>` and answers `Some(..)`, which for a
///   notify must be discarded;
/// - anything else is echoed unchanged.
///
/// `on_connect` waits at the barrier (if any) and pushes the greeting.
#[derive(Clone, Default)]
struct Lab {
    all_connected: Option<Arc<Barrier>>,
    connects: Arc<AtomicUsize>,
    disconnects: Arc<Mutex<Vec<String>>>,
}

impl Lab {
    fn disconnects(&self) -> Vec<String> {
        self.disconnects.lock().unwrap().clone()
    }
}

impl Handler for Lab {
    type Request = String;
    type Response = String;
    type Error = String;

    async fn on_connect(&self, conn: &Connection) {
        self.connects.fetch_add(1, Ordering::SeqCst);
        if let Some(barrier) = &self.all_connected {
            barrier.wait().await;
        }
        conn.push(GREETING).await.expect("pushing the greeting");
    }

    async fn handle(&self, req: String, conn: &Connection) -> Result<Option<String>, String> {
        if let Some(rest) = req.strip_prefix("sleep:") {
            let (ms, word) = rest.split_once(':').expect("sleep:<ms>:<word>");
            let ms: u64 = ms.parse().expect("sleep milliseconds");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Some(word.to_owned()))
        } else if let Some(text) = req.strip_prefix("fail:") {
            Err(text.to_owned())
        } else if let Some(text) = req.strip_prefix("panic:") {
            panic!("{text}");
        } else if req == "silent" {
            Ok(None)
        } else if let Some(text) = req.strip_prefix("note:") {
            conn.push(format!("seen:{text}"))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(format!("this reply to note:{text} must be discarded")))
        } else {
            Ok(Some(req))
        }
    }

    async fn on_disconnect(&self, _conn: &Connection, reason: &Disconnect) {
        self.disconnects.lock().unwrap().push(format!("{reason:?}"));
    }
}

/// Waits until the server has no connection left and `expected` connections
/// reported their end, and checks each was a clean close by the client.
async fn assert_all_closed_cleanly(server: &ServerHandle, lab: &Lab, expected: usize) {
    wait_until("connection_count() to drop to 0", || {
        server.connection_count() == 0
    })
    .await;
    wait_until("every on_disconnect to run", || {
        lab.disconnects().len() >= expected
    })
    .await;
    assert_eq!(
        lab.disconnects(),
        vec!["PeerClosed".to_owned(); expected],
        "the server should see each Python client's half-close as PeerClosed"
    );
    assert_eq!(lab.connects.load(Ordering::SeqCst), expected);
}

/// What a plain-profile server does with each message.
#[derive(Clone, Copy)]
enum PlainReply {
    /// Nothing: `Ok(None)`.
    Silent,
    /// `"echo:" + msg`.
    Tagged,
    /// The message unchanged.
    Exact,
}

/// A plain-profile handler that records every message it receives.
#[derive(Clone)]
struct PlainProbe {
    greeting: Option<&'static str>,
    reply: PlainReply,
    received: Arc<Mutex<Vec<String>>>,
    disconnects: Arc<AtomicUsize>,
}

impl PlainProbe {
    fn new(greeting: Option<&'static str>, reply: PlainReply) -> Self {
        PlainProbe {
            greeting,
            reply,
            received: Arc::default(),
            disconnects: Arc::default(),
        }
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Handler for PlainProbe {
    type Request = String;
    type Response = String;
    type Error = String;

    async fn on_connect(&self, conn: &Connection) {
        if let Some(greeting) = self.greeting {
            conn.push(greeting)
                .await
                .expect("pushing the plain greeting");
        }
    }

    async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, String> {
        self.received.lock().unwrap().push(req.clone());
        Ok(match self.reply {
            PlainReply::Silent => None,
            PlainReply::Tagged => Some(format!("echo:{req}")),
            PlainReply::Exact => Some(req),
        })
    }

    async fn on_disconnect(&self, _conn: &Connection, _reason: &Disconnect) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// 1 & 2. One Python mux client: out of order, errors, pushes, big bodies
// ---------------------------------------------------------------------------

async fn one_client_full_exchange(bind: &str, host: &str, tag: &str, profile: Profile) {
    let lab = Lab::default();
    let server = start_server(bind, profile, lab.clone()).await;
    let port = server.local_addr().port();

    let unicode = "¿qué tal? ñandú 🦀 añoranza €".to_owned();
    let big = big_text(tag, 3 * 1024 * 1024);
    // Ids 1..=4 sleep less the later they arrive, so they must come back in
    // reverse; the others answer at once.
    let plan: Vec<(String, Expect)> = vec![
        ("sleep:900:uno".into(), ok("uno")),
        ("sleep:600:dos".into(), ok("dos")),
        ("sleep:300:tres".into(), ok("tres")),
        ("sleep:0:cuatro".into(), ok("cuatro")),
        (
            "fail:no such key: ñandú".into(),
            Expect::Error(1, "no such key: ñandú".into()),
        ),
        (
            "panic:boom 🦀 in the handler".into(),
            Expect::Error(2, "boom 🦀 in the handler".into()),
        ),
        ("silent".into(), Expect::Code(5)),
        (unicode.clone(), ok(unicode)),
        (String::new(), ok("")),
        (big.clone(), ok(big)),
    ];
    let (requests, expected): (Vec<String>, Vec<Expect>) = plan.into_iter().unzip();
    let notifies = vec!["note:uno".to_owned(), "note:dos ñandú 🦀".to_owned()];
    let pushes = vec![
        GREETING.to_owned(),
        "seen:uno".to_owned(),
        "seen:dos ñandú 🦀".to_owned(),
    ];

    let run = run_mux_client(
        tag,
        host,
        port,
        &requests,
        &notifies,
        pushes.len(),
        SCRIPT_TIMEOUT,
    )
    .await;
    let report = run.report();

    assert_responses(&report, &expected, tag);
    assert_not_ascending(&report.order, tag);
    let (p1, p2, p3, p4) = (
        position(&report, 1),
        position(&report, 2),
        position(&report, 3),
        position(&report, 4),
    );
    assert!(
        p4 < p3 && p3 < p2 && p2 < p1,
        "{tag}: sleeping requests 1..=4 must arrive in reverse, order was {:?}",
        report.order
    );
    assert_pushes(&report.pushes, &pushes, tag);
    assert!(report.eof, "{tag}: the Python client must see a clean EOF");

    assert_all_closed_cleanly(&server, &lab, 1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mux_client_gets_out_of_order_replies_errors_pushes_and_3mib_echo_ipv4() {
    bounded(
        "Python mux client vs enchufe mux server over IPv4",
        one_client_full_exchange("127.0.0.1:0", "127.0.0.1", "ipv4", Profile::Multiplexed),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mux_client_gets_out_of_order_replies_errors_pushes_and_3mib_echo_ipv6() {
    bounded(
        "Python mux client vs enchufe default (automatic) server over IPv6",
        // The server's default profile: the client's hello makes it multiplexed.
        one_client_full_exchange("[::1]:0", "::1", "ipv6", Profile::Auto),
    )
    .await;
}

// ---------------------------------------------------------------------------
// 3. Several Python mux clients at once
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_concurrent_python_mux_clients_each_get_their_own_replies_and_pushes() {
    bounded(
        "four Python mux clients vs one enchufe mux server",
        concurrent_clients(4),
    )
    .await;
}

async fn concurrent_clients(clients: usize) {
    // Nobody is greeted until every client has connected, so the test stalls
    // (and fails) unless they are all served at the same time.
    let lab = Lab {
        all_connected: Some(Arc::new(Barrier::new(clients))),
        ..Lab::default()
    };
    let server = start_server("127.0.0.1:0", Profile::Multiplexed, lab.clone()).await;
    let port = server.local_addr().port();

    let runs = (0..clients).map(|i| async move {
        let tag = format!("concurrent-{i}");
        let big = big_text(&tag, 512 * 1024);
        let plan: Vec<(String, Expect)> = vec![
            (format!("sleep:400:c{i}-lento"), ok(format!("c{i}-lento"))),
            (format!("sleep:0:c{i}-rapido"), ok(format!("c{i}-rapido"))),
            (
                format!("cliente {i}: ñandú 🦀"),
                ok(format!("cliente {i}: ñandú 🦀")),
            ),
            (
                format!("fail:cliente {i} falla"),
                Expect::Error(1, format!("cliente {i} falla")),
            ),
            (big.clone(), ok(big)),
        ];
        let (requests, expected): (Vec<String>, Vec<Expect>) = plan.into_iter().unzip();
        let notifies = vec![format!("note:c{i}-a"), format!("note:c{i}-b")];
        let pushes = vec![
            GREETING.to_owned(),
            format!("seen:c{i}-a"),
            format!("seen:c{i}-b"),
        ];
        let run = run_mux_client(
            &tag,
            "127.0.0.1",
            port,
            &requests,
            &notifies,
            pushes.len(),
            SCRIPT_TIMEOUT,
        )
        .await;
        (tag, run, expected, pushes)
    });
    for (tag, run, expected, pushes) in futures::future::join_all(runs).await {
        let report = run.report();
        assert_responses(&report, &expected, &tag);
        assert!(
            position(&report, 2) < position(&report, 1),
            "{tag}: the slow request 1 must arrive after request 2, order was {:?}",
            report.order
        );
        assert_not_ascending(&report.order, &tag);
        assert_pushes(&report.pushes, &pushes, &tag);
        assert!(report.eof, "{tag}: the Python client must see a clean EOF");
    }

    assert_all_closed_cleanly(&server, &lab, clients).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// 4. A plain-profile server is not mistaken for a multiplexed one
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mux_client_times_out_with_exit_3_on_silent_plain_server_that_sends_no_hello() {
    bounded(
        "Python mux client vs silent plain server",
        silent_plain_server(),
    )
    .await;
}

async fn silent_plain_server() {
    let (addr, server) = hand_written_plain_server(PlainReply::Silent).await;
    let started = tokio::time::Instant::now();
    let run = run_mux_client(
        "plain-silent",
        "127.0.0.1",
        addr.port(),
        &["hola".to_owned()],
        &["note:x".to_owned()],
        1,
        "2",
    )
    .await;
    run.assert_failed(3, "time");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the client should wait for the hello about its 2 s timeout, gave up after {:?}",
        started.elapsed()
    );
    // The plain server took the client's hello for an ordinary message, and
    // nothing else arrived: the client sent no notify or request before it
    // had accepted a hello.
    assert_eq!(server.await.unwrap(), vec![CLIENT_HELLO_AS_TEXT.to_owned()]);
}

/// A plain server that is not enchufe's, by hand: the course's protocol,
/// each message answered per `reply` and recorded. (An enchufe server
/// pinned to the plain profile closes at a multiplexed hello; this stands
/// for every other plain server.) Serves one connection; the task returns
/// what it received.
async fn hand_written_plain_server(
    reply: PlainReply,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut t = enchufe::Transport::new(stream);
        let mut received = Vec::new();
        while let Ok(Some(frame)) = t.recv().await {
            let text = String::from_utf8(frame.to_vec()).expect("UTF-8 from the client");
            received.push(text.clone());
            let answer = match reply {
                PlainReply::Silent => continue,
                PlainReply::Tagged => format!("echo:{text}"),
                PlainReply::Exact => text,
            };
            if t.send(enchufe::Bytes::from(answer)).await.is_err() {
                break;
            }
        }
        received
    });
    (addr, task)
}

/// An enchufe server pinned to the plain profile closes the connection at
/// a multiplexed hello: nothing reaches its handler, and it counts the
/// mismatch. (It used to take the hello for a message and answer it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mux_client_at_a_pinned_plain_enchufe_server_is_closed_at_its_hello_exit_2() {
    bounded("Python mux client vs enchufe plain server", async {
        let probe = PlainProbe::new(None, PlainReply::Exact);
        let server = start_server("127.0.0.1:0", Profile::Plain, probe.clone()).await;
        let run = run_mux_client(
            "plain-enchufe",
            "127.0.0.1",
            server.local_addr().port(),
            &["hola".to_owned()],
            &[],
            0,
            SCRIPT_TIMEOUT,
        )
        .await;
        run.assert_failed(2, "closed before its hello");
        wait_until("the plain server to see the connection end", || {
            probe.disconnects.load(Ordering::SeqCst) == 1
        })
        .await;
        assert!(probe.received().is_empty(), "{:?}", probe.received());
        assert_eq!(server.stats().profile_mismatches, 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mux_client_rejects_plain_greeting_and_plain_echo_as_not_enchufe_exit_4() {
    bounded(
        "Python mux client vs plain greeting / plain echo",
        plain_greeting_and_tagged_echo(),
    )
    .await;
}

async fn plain_greeting_and_tagged_echo() {
    // A plain server that greets: the greeting arrives where the hello should.
    let probe = PlainProbe::new(Some(GREETING), PlainReply::Tagged);
    let server = start_server("127.0.0.1:0", Profile::Plain, probe.clone()).await;
    let run = run_mux_client(
        "plain-greeting",
        "127.0.0.1",
        server.local_addr().port(),
        &["hola".to_owned()],
        &[],
        0,
        SCRIPT_TIMEOUT,
    )
    .await;
    run.assert_failed(4, "not an enchufe peer");
    server.shutdown().await;

    // A plain server that answers "echo:" + msg: the client's hello comes
    // back with a prefix, so the magic does not match.
    let (addr, server) = hand_written_plain_server(PlainReply::Tagged).await;
    let run = run_mux_client(
        "plain-tagged-echo",
        "127.0.0.1",
        addr.port(),
        &["hola".to_owned()],
        &[],
        0,
        SCRIPT_TIMEOUT,
    )
    .await;
    run.assert_failed(4, "not an enchufe peer");
    assert_eq!(server.await.unwrap(), vec![CLIENT_HELLO_AS_TEXT.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mux_client_exits_2_when_plain_exact_echo_bounces_its_hello_and_request() {
    bounded("Python mux client vs plain exact echo", plain_exact_echo()).await;
}

async fn plain_exact_echo() {
    // The one plain server that passes the hello check: it returns the
    // client's own hello. The first request then comes back as a request
    // frame (kind 1), which may not travel server->client.
    let (addr, server) = hand_written_plain_server(PlainReply::Exact).await;
    let run = run_mux_client(
        "plain-exact-echo",
        "127.0.0.1",
        addr.port(),
        &["hola".to_owned()],
        &[],
        0,
        SCRIPT_TIMEOUT,
    )
    .await;
    run.assert_failed(2, "kind 1 (request) may not travel server->client");
    let mut request = vec![1u8, 0, 0, 0, 0, 0, 0, 0, 1];
    request.extend_from_slice(b"hola");
    assert_eq!(
        server.await.unwrap(),
        vec![
            CLIENT_HELLO_AS_TEXT.to_owned(),
            String::from_utf8(request).expect("a request frame for id 1 is UTF-8"),
        ],
        "the plain server saw the hello and the request as two plain messages"
    );
}
