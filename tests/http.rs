//! HTTP/1.1 on the connection driver (`enchufe::http`): with `curl`
//! (installed by `scripts/setup`), with the `http_get` example's hand-written
//! client, and with raw bytes for the refusals and the async handler's
//! guarantees (order, panics, timeouts, shutdown, deadlines while it runs).
//! Every exchange runs over loopback within a time limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enchufe::http::{handler_fn, Config, Handler, Limits, Request, Response, Server};
use tokio::io::AsyncBufReadExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::timeout;

#[allow(dead_code)]
#[path = "../examples/http_get.rs"]
mod http_get;

const LIMIT: Duration = Duration::from_secs(20);

async fn hello(request: Request) -> Response {
    Response::text(200, format!("hola {}\n", request.path()))
}

/// A server on port 0 answering with [`hello`], its address, and what
/// stops it.
async fn start(config: Config) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    start_with(config, handler_fn(hello)).await
}

/// A server on port 0 with this handler.
async fn start_with(
    config: Config,
    handler: impl Handler,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let server = Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config);
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(handler, async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

/// Runs curl with these arguments; its stdout.
async fn curl(args: &[&str]) -> String {
    let out = timeout(
        LIMIT,
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output(),
    )
    .await
    .expect("curl within the limit")
    .expect("curl is on PATH (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes `bytes` and reads until the server closes.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    timeout(LIMIT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    })
    .await
    .expect("the server answers and closes within the limit")
}

#[tokio::test]
async fn curl_gets_a_page_and_reuses_one_connection_for_two() {
    let (addr, _stop, _task) = start(Config::default()).await;
    let url = format!("http://{addr}/hola");
    assert_eq!(curl(&[&url]).await, "hola /hola\n");
    // `num_connects`: connections curl opened for each transfer; 0 for the
    // second means it went over the first one's connection (keep-alive).
    let other = format!("http://{addr}/otra");
    let counts = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects}\n",
        &url,
        &other,
    ])
    .await;
    assert_eq!(counts, "1\n0\n");
}

#[tokio::test]
async fn a_17_kib_header_is_431_and_the_connection_closes() {
    let (addr, _stop, _task) = start(Config::default()).await;
    let big = format!("X-Big: {}", "a".repeat(17 * 1024));
    let url = format!("http://{addr}/");
    let code = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-H", &big, &url]).await;
    assert_eq!(code, "431");
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\n{big}\r\n\r\n");
    assert!(exchange(addr, head.as_bytes())
        .await
        .starts_with("HTTP/1.1 431 "));
    // Too many headers, under the byte limit.
    let (addr, _stop, _task) =
        start(Config::default().limits(Limits::default().max_headers(4))).await;
    let many = "GET / HTTP/1.1\r\nHost: x\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n";
    assert!(exchange(addr, many.as_bytes())
        .await
        .starts_with("HTTP/1.1 431 "));
}

#[tokio::test]
async fn garbage_bodies_and_missing_hosts_are_refused_then_closed() {
    let (addr, _stop, _task) = start(Config::default()).await;
    let cases: [(&[u8], &str); 5] = [
        (b"\x16\x03\x01\x02\x00hello\r\n\r\n", "400"),
        (b"\0\0\0\x04hola", "400"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8388609\r\n\r\nhello",
            "413",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "501",
        ),
    ];
    for (bytes, status) in cases {
        let reply = exchange(addr, bytes).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{bytes:?}: {reply}"
        );
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
    }
}

#[tokio::test]
async fn a_head_that_does_not_arrive_in_time_is_408() {
    let config = Config::default().head_timeout(Duration::from_millis(200));
    let (addr, _stop, _task) = start(config).await;
    let reply = exchange(addr, b"GET / HTTP/1.1\r\nHo").await;
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_http_1_0_closes() {
    let (addr, _stop, _task) = start(Config::default()).await;
    let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let reply = exchange(addr, two).await;
    let a = reply.find("hola /a\n").expect("first body");
    let c = reply.find("hola /c\n").expect("third body");
    assert!(
        a < c && !reply.contains("hola /b"),
        "HEAD has no body: {reply}"
    );
    assert_eq!(reply.matches("HTTP/1.1 200 OK\r\n").count(), 3);
    let reply = exchange(addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(
        reply.starts_with("HTTP/1.1 200 ") && reply.ends_with("hola /old\n"),
        "{reply}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let config = Config::default().idle_timeout(Duration::from_millis(200));
    let (addr, _stop, _task) = start(config).await;
    timeout(LIMIT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        // The reply, then nothing until the idle timeout closes the socket.
        stream.read_to_end(&mut reply).await.unwrap();
        let reply = String::from_utf8(reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200 ") && reply.ends_with("hola /k\n"),
            "{reply}"
        );
        assert!(
            !reply.contains("Connection: close"),
            "kept alive until idle: {reply}"
        );
    })
    .await
    .expect("closed by the idle timeout");
}

#[tokio::test]
async fn the_hand_written_client_reads_a_reply_and_names_a_server_that_is_not_http() {
    let (addr, stop, task) = start(Config::default()).await;
    let reply = timeout(LIMIT, http_get::get(&format!("http://{addr}/mundo")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (reply.status, &reply.body[..]),
        (200, &b"hola /mundo\n"[..])
    );
    assert!(reply
        .headers
        .iter()
        .any(|(n, v)| n == "Content-Length" && v == "12"));

    // An enchufe frame server: it hangs up on an HTTP request.
    let frames = enchufe::Server::bind("127.0.0.1:0").await.unwrap();
    let frame_addr = frames.local_addr().unwrap();
    let echo = enchufe::handler_fn(|b: bytes::Bytes, _: enchufe::Connection| async move {
        Ok::<_, std::convert::Infallible>(Some(b))
    });
    tokio::spawn(frames.run(echo, std::future::pending::<()>()));
    let err = timeout(LIMIT, http_get::get(&format!("http://{frame_addr}/")))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP"), "{err}");

    // A server that answers something else.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        let _ = s.read(&mut [0; 64]).await;
    });
    let err = timeout(LIMIT, http_get::get(&format!("http://{other}/")))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not an HTTP server"), "{err}");

    // Shutdown: the server returns, and an open keep-alive connection ends.
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    timeout(LIMIT, open.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    stop.send(()).unwrap();
    timeout(LIMIT, task)
        .await
        .expect("the server stops")
        .unwrap();
    let mut rest = Vec::new();
    timeout(LIMIT, open.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
}

/// Sends `note` when dropped: a handler's future ended or was cancelled.
struct OnDrop(mpsc::Sender<&'static str>, &'static str);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.try_send(self.1);
    }
}

/// A handler for the async tests, by path:
/// - `/wait`: says `started`, then waits for a permit of `gate`;
/// - `/slow/MS`: sleeps that long, then answers;
/// - `/forever`: says `started` and never answers (says `dropped` when its
///   future is dropped);
/// - `/boom`: panics;
/// - `/big`: a 16 MiB body;
/// - anything else: answers at once.
fn awaiting(gate: Arc<Semaphore>, notes: mpsc::Sender<&'static str>) -> impl Handler {
    handler_fn(move |request: Request| {
        let (gate, notes) = (gate.clone(), notes.clone());
        async move {
            let path = request.path();
            if path == "/wait" {
                let _ = notes.try_send("started");
                gate.acquire().await.unwrap().forget();
            } else if let Some(ms) = path.strip_prefix("/slow/") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            } else if path == "/forever" {
                let _dropped = OnDrop(notes.clone(), "dropped");
                let _ = notes.try_send("started");
                std::future::pending::<()>().await;
            } else if path == "/boom" {
                panic!("the handler failed on purpose");
            } else if path == "/big" {
                return Response::new(200, vec![b'x'; 16 << 20]);
            }
            Response::text(200, format!("hola {path}\n"))
        }
    })
}

/// Reads one keep-alive reply: its head, then `Content-Length` bytes.
async fn read_reply(stream: &mut TcpStream) -> String {
    timeout(LIMIT, async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await.unwrap();
        head + &String::from_utf8(body).unwrap()
    })
    .await
    .expect("a reply within the limit")
}

async fn note(notes: &mut mpsc::Receiver<&'static str>) -> &'static str {
    timeout(LIMIT, notes.recv())
        .await
        .expect("a note within the limit")
        .unwrap()
}

#[tokio::test]
async fn an_awaiting_handler_holds_neither_the_runtime_nor_the_order_of_pipelined_replies() {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut notes) = mpsc::channel(8);
    let (addr, _stop, _task) = start_with(Config::default(), awaiting(gate.clone(), tx)).await;
    // One connection's handler waits (on this single-threaded runtime a
    // blocking one would stop everything)...
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(note(&mut notes).await, "started");
    // ...while another's pipelined requests are answered, the slower first.
    let two = b"GET /slow/50 HTTP/1.1\r\nHost: x\r\n\r\n\
                GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let reply = exchange(addr, two).await;
    let slow = reply.find("hola /slow/50\n").expect("first body");
    let b = reply.find("hola /b\n").expect("second body");
    assert!(slow < b, "{reply}");
    gate.add_permits(1);
    let reply = read_reply(&mut waiting).await;
    assert!(reply.ends_with("hola /wait\n"), "{reply}");
}

#[tokio::test]
async fn a_panicking_handler_is_500_and_closes_only_its_connection() {
    let (tx, _notes) = mpsc::channel(8);
    let handler = awaiting(Arc::new(Semaphore::new(0)), tx);
    let (addr, _stop, _task) = start_with(Config::default(), handler).await;
    let mut other = TcpStream::connect(addr).await.unwrap();
    let get = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
    other.write_all(get).await.unwrap();
    assert!(read_reply(&mut other).await.ends_with("hola /ok\n"));

    let reply = exchange(
        addr,
        b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
    assert!(reply.contains("Connection: close\r\n"), "{reply}");
    assert!(
        !reply.contains("/after"),
        "nothing after the panic: {reply}"
    );

    // The connection open before, and a new one, are served as ever.
    other.write_all(get).await.unwrap();
    assert!(read_reply(&mut other).await.ends_with("hola /ok\n"));
    let reply = exchange(addr, b"GET /new HTTP/1.0\r\n\r\n").await;
    assert!(reply.ends_with("hola /new\n"), "{reply}");
}

#[tokio::test]
async fn a_handler_past_its_timeout_is_503_and_the_connection_goes_on() {
    let (tx, mut notes) = mpsc::channel(8);
    let config = Config::default().handler_timeout(Some(Duration::from_millis(100)));
    let handler = awaiting(Arc::new(Semaphore::new(0)), tx);
    let (addr, _stop, _task) = start_with(config, handler).await;
    let reply = exchange(
        addr,
        b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let timed_out = reply.find("HTTP/1.1 503 ").expect("503 first");
    let next = reply.find("HTTP/1.1 200 ").expect("then the next request");
    assert!(
        timed_out < next && reply.ends_with("hola /next\n"),
        "{reply}"
    );
    assert_eq!(note(&mut notes).await, "started");
    assert_eq!(note(&mut notes).await, "dropped");
}

#[tokio::test]
async fn idle_waits_for_a_running_handler_and_a_stalled_write_ends_it() {
    // A handler that outlasts the idle timeout still answers.
    let (tx, mut notes) = mpsc::channel(8);
    let config = Config::default().idle_timeout(Duration::from_millis(100));
    let handler = awaiting(Arc::new(Semaphore::new(0)), tx.clone());
    let (addr, _stop, _task) = start_with(config, handler).await;
    let reply = exchange(addr, b"GET /slow/400 HTTP/1.0\r\n\r\n").await;
    assert!(reply.ends_with("hola /slow/400\n"), "{reply}");

    // A client that does not read its 16 MiB reply: the write deadline
    // passes while the next request's handler runs, and the connection is
    // dropped with it.
    let mut config = Config::default().write_timeout(Duration::from_millis(200));
    config.max_response = 32 << 20;
    config.output_budget = usize::MAX;
    let handler = awaiting(Arc::new(Semaphore::new(0)), tx);
    let (addr, _stop, _task) = start_with(config, handler).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    stuck
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(note(&mut notes).await, "started");
    assert_eq!(note(&mut notes).await, "dropped");
}

#[tokio::test]
async fn shutdown_lets_a_running_handler_finish_and_drops_one_past_the_grace() {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut notes) = mpsc::channel(8);
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (began, stopping) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(awaiting(gate.clone(), tx.clone()), async move {
        let _ = stopped.await;
        // Heard only once the server yields, after it told its connections.
        let _ = began.send(());
    }));
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(note(&mut notes).await, "started");
    stop.send(()).unwrap();
    timeout(LIMIT, stopping).await.unwrap().unwrap();
    gate.add_permits(1);
    let mut reply = Vec::new();
    timeout(LIMIT, waiting.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(
        reply.contains("Connection: close\r\n") && reply.ends_with("hola /wait\n"),
        "the last reply, marked so: {reply}"
    );
    timeout(LIMIT, task)
        .await
        .expect("the server stops")
        .unwrap();

    // A handler that never ends is dropped once the grace period is over.
    let config = Config::default().shutdown_grace(Duration::from_millis(100));
    let handler = awaiting(gate, tx);
    let (addr, stop, task) = start_with(config, handler).await;
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(note(&mut notes).await, "started");
    stop.send(()).unwrap();
    timeout(LIMIT, task)
        .await
        .expect("the server stops")
        .unwrap();
    assert_eq!(note(&mut notes).await, "dropped");
    let mut rest = Vec::new();
    let _ = timeout(LIMIT, stuck.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "no reply from a cancelled handler");
}

/// The rules table over the wire: each smuggling shape of RFC 9112 is
/// refused with its status and the connection closed, so what follows the
/// head is never served as a request of its own.
#[tokio::test]
async fn smuggling_shapes_are_refused_and_close_the_connection() {
    let (addr, _stop, _task) = start(Config::default()).await;
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let shapes: [(&[u8], &str); 13] = [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 35\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xff41\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\xff\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "400"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
        (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", "501"),
        (b"GET x HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
    ];
    for (head, status) in shapes {
        let bytes = [head, smuggled].concat();
        let reply = exchange(addr, &bytes).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{head:?}: {reply}"
        );
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
        assert!(!reply.contains("smuggled"), "{head:?}: {reply}");
        assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    }
    let target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let reply = exchange(addr, target.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 414 "), "{reply}");
}

/// What the rules accept: a newer HTTP/1 minor as 1.1, an absolute-form
/// target with its path and authority apart, and a `Date` on every reply.
#[tokio::test]
async fn newer_minors_and_absolute_targets_are_served_with_a_date() {
    let seen = handler_fn(|request: Request| async move {
        let authority = request.authority().unwrap_or_default();
        Response::text(200, format!("{} at {authority}\n", request.path()))
    });
    let (addr, _stop, _task) = start_with(Config::default(), seen).await;
    let reply = exchange(
        addr,
        b"GET /a HTTP/1.2\r\nHost: x\r\n\r\n\
          GET http://example.com:81/b?c HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{reply}");
    assert!(reply.contains("/a at x\n"), "{reply}");
    assert!(reply.contains("/b?c at example.com:81\n"), "{reply}");
    assert_eq!(reply.matches("\r\nDate: ").count(), 2, "{reply}");
    // Refusals carry one too.
    let reply = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(
        reply.starts_with("HTTP/1.1 400 ") && reply.contains("\r\nDate: "),
        "{reply}"
    );
}

/// Answers `POST` with the request's body, and anything else with the
/// body's length unread.
async fn echo(mut request: Request) -> Response {
    if request.method() != "POST" {
        return Response::text(200, format!("{} unread\n", request.path()));
    }
    match request.body.to_bytes(8 << 20).await {
        Ok(body) => Response::new(200, body),
        Err(e) => Response::text(500, format!("{e}\n")),
    }
}

/// Bodies of both framings reach the handler whole, however they are cut,
/// and the request after each is read from where the body ends.
#[tokio::test]
async fn content_length_and_chunked_bodies_reach_the_handler_and_the_next_request_follows() {
    let (addr, _stop, _task) = start_with(Config::default(), handler_fn(echo)).await;
    let bytes = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\nGET /no HTTP/\
        POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhola \r\nA\r\ncomo estas\r\n0\r\nX-Trailer: t\r\n\r\n\
        GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let reply = exchange(addr, bytes).await;
    assert_eq!(reply.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{reply}");
    assert!(reply.contains("\r\n\r\nGET /no HTTP/"), "{reply}");
    assert!(reply.contains("\r\n\r\nhola como estas"), "{reply}");
    assert!(reply.ends_with("/c unread\n"), "{reply}");
    // The same bytes a few at a time.
    let reply = timeout(LIMIT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for piece in bytes.chunks(3) {
            stream.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        String::from_utf8(reply).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(reply.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{reply}");
    assert!(reply.contains("\r\n\r\nhola como estas"), "{reply}");
}

/// A body over `max_body` is 413 (declared, or counted as chunks come),
/// a broken chunk 400, and either closes the connection.
#[tokio::test]
async fn bodies_past_the_limit_are_413_and_broken_chunks_400() {
    let config = Config::default().max_body(10);
    let (addr, _stop, _task) = start_with(config, handler_fn(echo)).await;
    let next = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let shapes: [(&[u8], &str); 5] = [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhola mundo!", "413"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhola m\r\n5\r\nundo!\r\n0\r\n\r\n", "413"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhola\r\n0\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nholaX\r\n0\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", "400"),
    ];
    for (bytes, status) in shapes {
        let reply = exchange(addr, &[bytes, next].concat()).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{bytes:?}: {reply}"
        );
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
        assert!(!reply.contains("smuggled"), "{reply}");
    }
    let reply = exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhola mundo",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 200 ") && reply.ends_with("\r\n\r\nhola mundo"),
        "{reply}"
    );
}

/// A body the handler does not read is skipped up to `drain_bytes` and the
/// connection goes on; past it the connection closes after the reply.
#[tokio::test]
async fn an_unread_body_is_drained_or_the_connection_closed() {
    let config = Config::default().drain_bytes(17);
    let (addr, _stop, _task) = start_with(config, handler_fn(echo)).await;
    let small = b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\nGET /x HTTP/1.1\r\n\
        GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let reply = exchange(addr, small).await;
    assert!(
        reply.contains("/a unread\n") && reply.ends_with("/b unread\n"),
        "{reply}"
    );
    assert!(!reply.contains("/x"), "{reply}");
    let big = [
        &b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"[..],
        &[b'a'; 100],
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .concat();
    let reply = exchange(addr, &big).await;
    assert!(
        reply.ends_with("/a unread\n") && reply.contains("Connection: close\r\n"),
        "{reply}"
    );
}

/// `Expect: 100-continue` is answered `100 Continue` only when the handler
/// reads the body; a handler that does not gets its reply sent at once,
/// and the connection closes (the client may never send the body).
#[tokio::test]
async fn continue_is_sent_only_when_the_handler_reads_the_body() {
    let (addr, _stop, _task) = start_with(Config::default(), handler_fn(echo)).await;
    timeout(LIMIT, async {
        let mut stream = tokio::io::BufReader::new(TcpStream::connect(addr).await.unwrap());
        let head =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
        stream.get_mut().write_all(head).await.unwrap();
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
        stream.read_line(&mut line).await.unwrap();
        stream.get_mut().write_all(b"hola").await.unwrap();
        stream.get_mut().shutdown().await.unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        assert!(
            rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.ends_with("\r\n\r\nhola"),
            "{rest}"
        );

        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head =
            b"PUT /q HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
        stream.write_all(head).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(!reply.contains("100 Continue"), "{reply}");
        assert!(
            reply.starts_with("HTTP/1.1 200 OK\r\n") && reply.contains("Connection: close\r\n"),
            "{reply}"
        );
    })
    .await
    .unwrap();
    let reply = exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 417 "), "{reply}");
}

/// curl sends a file with `Content-Length` (`--data-binary @file`) and
/// chunked from stdin (`-T -`, after `Expect: 100-continue`); both come
/// back byte for byte.
#[tokio::test]
async fn curl_round_trips_a_body_with_content_length_and_chunked() {
    let (addr, _stop, _task) = start_with(Config::default(), handler_fn(echo)).await;
    let text: String = (0..20_000).map(|i| format!("linea {i}\n")).collect();
    let path = std::env::temp_dir().join(format!("enchufe-http-body-{}", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let url = format!("http://{addr}/eco");
    let file = format!("@{}", path.display());
    let back = curl(&["--data-binary", &file, &url]).await;
    assert!(back == text, "{} bytes back of {}", back.len(), text.len());
    let out = timeout(
        LIMIT,
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "curl -sS --max-time 10 -X POST -H 'Transfer-Encoding: chunked' -T - {url} < {}",
                path.display()
            ))
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == text.as_bytes(),
        "{} bytes back",
        out.stdout.len()
    );
}

/// Streamed replies: a request body streamed back (chunked on HTTP/1.1,
/// through curl, larger than the output budget and the body channel), a
/// declared length, HTTP/1.0 (no chunked: the close ends it), and `HEAD`
/// (no body).
#[tokio::test]
async fn streamed_replies_are_chunked_or_sized_and_head_has_no_body() {
    let stream = handler_fn(|request: Request| async move {
        match request.path() {
            "/eco" => Response::stream(200, request.body),
            "/sized" => {
                let parts = ["ho", "la", "!"].map(|p| Ok::<_, std::io::Error>(p.into()));
                Response::stream(200, futures::stream::iter(parts)).length(5)
            }
            "/short" => {
                let parts = [Ok::<_, std::io::Error>("hola".into())];
                Response::stream(200, futures::stream::iter(parts)).length(9)
            }
            _ => Response::reader(200, &b"del lector\n"[..]),
        }
    });
    let config = Config::default().max_body(64 << 20);
    let (addr, _stop, _task) = start_with(config, stream).await;
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let path = std::env::temp_dir().join(format!("enchufe-http-stream-{}", std::process::id()));
    std::fs::write(&path, &data).unwrap();
    let out = timeout(
        LIMIT,
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--data-binary"])
            .arg(format!("@{}", path.display()))
            .arg(format!("http://{addr}/eco"))
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == data,
        "{} bytes back of {}",
        out.stdout.len(),
        data.len()
    );

    let reply = exchange(
        addr,
        b"GET /r HTTP/1.1\r\nHost: x\r\n\r\nHEAD /r HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (first, rest) = reply.split_once("\r\n\r\n").unwrap();
    assert!(first.contains("Transfer-Encoding: chunked"), "{reply}");
    assert!(
        rest.starts_with("b\r\ndel lector\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{reply}"
    );
    let (second, rest) = rest
        .split_once("0\r\n\r\n")
        .unwrap()
        .1
        .split_once("\r\n\r\n")
        .unwrap();
    assert!(second.contains("Transfer-Encoding: chunked"), "{reply}");
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n"),
        "HEAD has no body: {reply}"
    );
    assert!(
        rest.contains("Content-Length: 5\r\n") && rest.ends_with("\r\n\r\nhola!"),
        "{reply}"
    );

    let reply = exchange(addr, b"GET /r HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await;
    assert!(
        !reply.contains("chunked") && !reply.contains("Content-Length"),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\ndel lector\n"), "{reply}");
    // Shorter than declared: cut, and the connection closes.
    let reply = exchange(addr, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        reply.contains("Content-Length: 9\r\n") && reply.ends_with("hola"),
        "{reply}"
    );
}

/// A body that stops arriving while the handler reads it ends within the
/// idle timeout: the handler's read fails and the connection closes.
#[tokio::test]
async fn a_body_that_stops_arriving_ends_at_the_idle_timeout() {
    let config = Config::default().idle_timeout(Duration::from_millis(300));
    let (addr, _stop, _task) = start_with(config, handler_fn(echo)).await;
    let reply = exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhola",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
    assert!(reply.contains("Connection: close\r\n"), "{reply}");
    let reply = exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhola\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
}

/// Shutdown reaches a connection idle between keep-alive requests at
/// once: it closes without waiting for the grace period (here longer than
/// the test's limit), and the server stops.
#[tokio::test]
async fn shutdown_closes_an_idle_keep_alive_connection_at_once() {
    let config = Config::default().shutdown_grace(Duration::from_secs(600));
    let (addr, stop, task) = start(config).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /uno HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = vec![0u8; 4096];
    let mut got = 0;
    while !reply[..got].ends_with(b"hola /uno\n") {
        let n = timeout(LIMIT, idle.read(&mut reply[got..]))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the reply");
        got += n;
    }
    assert!(!String::from_utf8_lossy(&reply[..got]).contains("Connection: close"));
    stop.send(()).unwrap();
    let n = timeout(LIMIT, idle.read(&mut reply))
        .await
        .expect("the idle connection is closed at shutdown")
        .unwrap();
    assert_eq!(n, 0);
    timeout(LIMIT, task)
        .await
        .expect("the server stops")
        .unwrap();
}
