//! HTTP/1.1 on the connection driver (`enchufe::http`): with `curl`
//! (installed by `scripts/setup`), with the `http_get` example's hand-written
//! client, and with raw bytes for the refusals. Every exchange runs over
//! loopback within a time limit.

use std::net::SocketAddr;
use std::time::Duration;

use enchufe::http::{Config, Limits, Request, Response, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

#[allow(dead_code)]
#[path = "../examples/http_get.rs"]
mod http_get;

const LIMIT: Duration = Duration::from_secs(20);

fn hello(request: &Request) -> Response {
    Response::text(200, format!("hola {}\n", request.path))
}

/// A server on port 0, its address, and what stops it.
async fn start(config: Config) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let server = Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config);
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(hello, async move {
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
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            "413",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
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
