//! enchufe's HTTP/1.1 server against hyper's, byte for byte: the same raw
//! requests (the `http_head` fuzz corpus, the request-smuggling shapes of
//! RFC 9112 §11 and the rules table's cases) go over TCP to `http_hello`'s
//! handler on both servers, and the test compares what each answered (the
//! class of every final status, in order) and what each handler saw
//! (method, target, authority, header set, body).
//!
//! A difference fails the test unless [`ALLOWED`] lists the case with the
//! reason; a listed case that no longer differs fails too, so the list
//! stays true.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::bounded;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The differences accepted, each with its reason. Most are enchufe
/// following an RFC "MUST" (or its rules table) where hyper is lenient;
/// none lets a request be read from the middle of another.
const ALLOWED: &[(&str, &str)] = &[
    (
        "corpus/too_many",
        "no Host on HTTP/1.1: enchufe 400 (RFC 9112 §3.2 MUST); hyper serves it",
    ),
    (
        "no host on 1.1",
        "RFC 9112 §3.2: a server MUST answer 400; hyper serves it",
    ),
    (
        "two hosts",
        "RFC 9112 §3.2: MUST 400; hyper serves it with the first Host",
    ),
    (
        "non-ascii host",
        "enchufe refuses non-ASCII framing headers (400); hyper serves it",
    ),
    (
        "HTTP/1.2",
        "RFC 9110 §2.5: a higher minor is served as 1.1; hyper (httparse) says 400",
    ),
    (
        "HTTP/2.0",
        "both refuse: enchufe 505 (RFC 9110 §15.6.6), hyper 400",
    ),
    (
        "content-length and transfer-encoding",
        "both safe: enchufe refuses (400, RFC 9112 §6.1 allows); hyper lets chunked win and closes",
    ),
    (
        "transfer-encoding and content-length",
        "both safe: enchufe refuses (400, RFC 9112 §6.1 allows); hyper lets chunked win and closes",
    ),
    (
        "content-length list, equal",
        "`4, 4`: enchufe takes the one value (RFC 9110 §8.6 allows); hyper says 400",
    ),
    (
        "content-length twice, equal",
        "same body; hyper folds the two equal lines into one (RFC 9110 §8.6), enchufe shows both",
    ),
    (
        "long head",
        "a 20 KB header: over enchufe's 16 KiB head limit (431); hyper's is ~400 KiB",
    ),
    (
        "long target",
        "a 20 KB target: over enchufe's 16 KiB head limit (414); hyper's is larger",
    ),
    (
        "lower-case method",
        "methods are case-sensitive: enchufe knows a fixed set (501, RFC 9110 §9.1); hyper hands \
         `get` to the handler, whose reply is 405",
    ),
    (
        "unknown method",
        "as lower-case method: enchufe 501, hyper's handler 405",
    ),
    (
        "transfer-encoding chunked twice",
        "RFC 9112 §6.1: chunked MUST NOT be applied twice; enchufe 400, hyper decodes once",
    ),
    (
        "transfer-encoding gzip, chunked",
        "enchufe does not decode gzip (501, RFC 9112 §6.1); hyper hands the coded body on",
    ),
];

/// How long a server may stay silent before its answer to a case counts
/// as complete: generous, since every case waits for it at once (a loaded
/// machine may take a while to answer), and a server that closes ends the
/// wait sooner.
const SILENCE: Duration = Duration::from_millis(1500);

/// The largest body either handler reads (both refuse past it).
const BODY_LIMIT: usize = 1 << 20;

/// What a handler saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    /// Path and query (the origin form, also of an absolute-form target).
    target: String,
    /// The target's authority, else the `Host` header.
    authority: Option<String>,
    /// Names in lower case, with their values, sorted: the header set.
    headers: Vec<(String, Vec<u8>)>,
    /// The body, when the handler read it (`/eco`).
    body: Option<Vec<u8>>,
}

/// What `http_hello`'s handler answers (its `/lento` aside), given the
/// request and, for `POST`/`PUT /eco`, the body it read.
fn hello(method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
    if let Some(body) = body {
        return (200, body);
    }
    if method != "GET" && method != "HEAD" {
        return (405, b"only GET and HEAD\n".to_vec());
    }
    if path == "/" {
        return (200, b"hola\n".to_vec());
    }
    match path.strip_prefix("/hola/") {
        Some(name) if !name.is_empty() => (200, format!("hola, {name}\n").into_bytes()),
        _ => (404, format!("no hay nada en {path}\n").into_bytes()),
    }
}

/// Whether the handler reads the body (`http_hello`'s `/eco`).
fn reads_body(method: &str, path: &str) -> bool {
    matches!(method, "POST" | "PUT") && path == "/eco"
}

fn header_set<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<(String, Vec<u8>)> {
    let mut set: Vec<_> = headers
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
        .collect();
    set.sort();
    set
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// enchufe's `http::Server` with `http_hello`'s handler, recording.
async fn enchufe_server(log: Log) -> SocketAddr {
    use enchufe::http::{handler_fn, Request, Response, Server};
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let handler = handler_fn(move |mut request: Request| {
        let log = log.clone();
        async move {
            let body = if reads_body(request.method(), request.path()) {
                match request.body.to_bytes(BODY_LIMIT).await {
                    Ok(body) => Some(body.to_vec()),
                    // The server answers a broken body itself.
                    Err(_) => return Response::text(400, "bad body\n"),
                }
            } else {
                None
            };
            let headers = request.headers();
            log.lock().unwrap().push(Seen {
                method: request.method().to_owned(),
                target: request.path().to_owned(),
                authority: request.authority().map(str::to_owned),
                headers: header_set(headers),
                body: body.clone(),
            });
            let (status, reply) = hello(request.method(), request.path(), body);
            Response::new(status, reply)
        }
    });
    tokio::spawn(server.run(handler, std::future::pending()));
    addr
}

/// hyper's HTTP/1.1 server (its defaults) with the same handler, recording.
async fn hyper_server(log: Log) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let log = log.clone();
                async move {
                    let (parts, incoming) = request.into_parts();
                    let method = parts.method.as_str().to_owned();
                    let uri = &parts.uri;
                    let target = uri
                        .path_and_query()
                        .map_or_else(|| uri.to_string(), |p| p.as_str().to_owned());
                    let host = parts.headers.get(hyper::header::HOST);
                    let authority = match uri.authority() {
                        Some(a) => Some(a.as_str().to_owned()),
                        None => host.map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
                    };
                    let body = if reads_body(&method, &target) {
                        match Limited::new(incoming, BODY_LIMIT).collect().await {
                            Ok(body) => Some(body.to_bytes().to_vec()),
                            Err(_) => {
                                let bad = Full::new(Bytes::from_static(b"bad body\n"));
                                let mut reply = hyper::Response::new(bad);
                                *reply.status_mut() = hyper::StatusCode::BAD_REQUEST;
                                return Ok::<_, Infallible>(reply);
                            }
                        }
                    } else {
                        None
                    };
                    let headers = parts
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_bytes()));
                    log.lock().unwrap().push(Seen {
                        method: method.clone(),
                        target: target.clone(),
                        authority,
                        headers: header_set(headers),
                        body: body.clone(),
                    });
                    let (status, reply) = hello(&method, &target, body);
                    let mut reply = hyper::Response::new(Full::new(Bytes::from(reply)));
                    *reply.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(reply)
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// What one server did with one case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// The class of each final status, in order: 2 for `2xx`, ...
    classes: Vec<u16>,
    seen: Vec<Seen>,
}

impl Outcome {
    /// For a failure's message: values and bodies cut short.
    fn summary(&self) -> String {
        let seen: Vec<String> = self
            .seen
            .iter()
            .map(|s| {
                let headers: Vec<String> = s
                    .headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", short(v)))
                    .collect();
                let body = s.body.as_deref().map(short);
                format!(
                    "{} {} authority {:?} [{}] body {body:?}",
                    s.method,
                    &s.target[..s.target.len().min(40)],
                    s.authority,
                    headers.join(", ")
                )
            })
            .collect();
        format!("classes {:?}, seen {seen:?}", self.classes)
    }
}

/// Bytes as text, cut at 80.
fn short(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    if bytes.len() > 80 {
        format!("{text:?}... ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

/// The final statuses in `out`: every `HTTP/1.x NNN` starting a line
/// (the handler's bodies here never hold one); `1xx` left out.
fn statuses(out: &[u8]) -> Vec<u16> {
    let mut found = Vec::new();
    for (at, _) in out.iter().enumerate() {
        let line_start = at == 0 || out[at - 1] == b'\n';
        let rest = &out[at..];
        if line_start && rest.len() >= 12 && rest.starts_with(b"HTTP/1.") && rest[8] == b' ' {
            if let Ok(code) = std::str::from_utf8(&rest[9..12])
                .unwrap_or("")
                .parse::<u16>()
            {
                if code >= 200 {
                    found.push(code);
                }
            }
        }
    }
    found
}

/// Sends `bytes` on a new connection to `addr`, then reads until the
/// server closes or stays silent for a moment; returns the statuses.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u16> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may close before taking everything (a refusal).
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(SILENCE, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
        if out.len() > 1 << 22 {
            break;
        }
    }
    statuses(&out)
}

/// One case on a fresh server of each kind.
async fn run_case(bytes: Vec<u8>) -> (Outcome, Outcome) {
    let (ours_log, theirs_log) = (Log::default(), Log::default());
    let ours = enchufe_server(ours_log.clone()).await;
    let theirs = hyper_server(theirs_log.clone()).await;
    let (a, b) = tokio::join!(exchange(ours, &bytes), exchange(theirs, &bytes));
    let outcome = |codes: Vec<u16>, log: &Log| Outcome {
        classes: codes.iter().map(|c| c / 100).collect(),
        seen: log.lock().unwrap().clone(),
    };
    (outcome(a, &ours_log), outcome(b, &theirs_log))
}

/// The fuzz corpus's inputs as the raw bytes they deliver: past the two
/// limit bytes, each control byte takes the next `control % 64 + 1` bytes.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/http_head");
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let mut rest = data.get(2..).unwrap_or_default();
        let mut bytes = Vec::new();
        while let Some((&control, tail)) = rest.split_first() {
            let n = (usize::from(control) % 64 + 1).min(tail.len());
            bytes.extend_from_slice(&tail[..n]);
            rest = &tail[n..];
        }
        let name = path.file_name().unwrap().to_string_lossy();
        cases.push((format!("corpus/{name}"), bytes));
    }
    assert!(cases.len() >= 8, "the corpus is in {}", dir.display());
    cases
}

/// A POST to `/eco` with these header lines and this body.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /eco HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}").into_bytes()
}

/// The shapes RFC 9112 §11 and the rules table name, each as raw bytes.
fn shapes() -> Vec<(String, Vec<u8>)> {
    let then_get = "GET /hola/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("get", b"GET /hola/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("post content-length", post("Content-Length: 4\r\n", "hola")),
        (
            "post chunked with extension and trailer",
            post(
                "Transfer-Encoding: chunked\r\n",
                "3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n",
            ),
        ),
        (
            "expect 100-continue",
            post("Content-Length: 2\r\nExpect: 100-continue\r\n", "ok"),
        ),
        (
            "pipelined",
            format!("GET /hola/a HTTP/1.1\r\nHost: x\r\n\r\n{then_get}").into_bytes(),
        ),
        (
            "get with a body, then another request",
            format!("GET /hola/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello{then_get}")
                .into_bytes(),
        ),
        (
            "content-length 0 then 44",
            post("Content-Length: 0\r\nContent-Length: 44\r\n", then_get),
        ),
        (
            "content-length twice, equal",
            post("Content-Length: 4\r\nContent-Length: 4\r\n", "hola"),
        ),
        (
            "content-length list, equal",
            post("Content-Length: 4, 4\r\n", "hola"),
        ),
        (
            "content-length list, differing",
            post("Content-Length: 4, 5\r\n", "hola!"),
        ),
        ("content-length +4", post("Content-Length: +4\r\n", "hola")),
        ("content-length -1", post("Content-Length: -1\r\n", "hola")),
        (
            "content-length hex",
            post("Content-Length: 0x4\r\n", "hola"),
        ),
        ("content-length empty", post("Content-Length: \r\n", "hola")),
        (
            "content-length overflow",
            post("Content-Length: 99999999999999999999999\r\n", ""),
        ),
        (
            "content-length not utf-8",
            b"POST /eco HTTP/1.1\r\nHost: x\r\nContent-Length: \xff4\r\n\r\nhola".to_vec(),
        ),
        (
            "content-length and transfer-encoding",
            post(
                "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{then_get}"),
            ),
        ),
        (
            "transfer-encoding and content-length",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                &format!("0\r\n\r\n{then_get}"),
            ),
        ),
        (
            "transfer-encoding gzip",
            post("Transfer-Encoding: gzip\r\n", "hola"),
        ),
        (
            "transfer-encoding chunked, gzip",
            post(
                "Transfer-Encoding: chunked, gzip\r\n",
                "4\r\nhola\r\n0\r\n\r\n",
            ),
        ),
        (
            "transfer-encoding gzip, chunked",
            post(
                "Transfer-Encoding: gzip, chunked\r\n",
                "4\r\nhola\r\n0\r\n\r\n",
            ),
        ),
        (
            "transfer-encoding chunked twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "4\r\nhola\r\n0\r\n\r\n",
            ),
        ),
        (
            "transfer-encoding Chunked",
            post("Transfer-Encoding: Chunked\r\n", "4\r\nhola\r\n0\r\n\r\n"),
        ),
        (
            "transfer-encoding not utf-8",
            [
                &b"POST /eco HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\xff\r\n\r\n"[..],
                b"4\r\nhola\r\n0\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "transfer-encoding on HTTP/1.0",
            b"POST /eco HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhola\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "transfer-encoding with obs-fold",
            post(
                "Transfer-Encoding:\r\n chunked\r\n",
                "4\r\nhola\r\n0\r\n\r\n",
            ),
        ),
        (
            "obs-fold",
            post("Content-Length: 4\r\nX-A: a\r\n b\r\n", "hola"),
        ),
        (
            "space before colon",
            post("Content-Length : 4\r\n", &format!("hola{then_get}")),
        ),
        ("tab in a name", post("Content\tLength: 4\r\n", "hola")),
        ("empty name", post(": 4\r\nContent-Length: 4\r\n", "hola")),
        (
            "nul in a value",
            post("Content-Length: 4\r\nX-A: a\0b\r\n", "hola"),
        ),
        ("bare LF", b"GET /hola/x HTTP/1.1\nHost: x\n\n".to_vec()),
        ("bare CR", b"GET /hola/x HTTP/1.1\rHost: x\r\n\r\n".to_vec()),
        (
            "leading blank line",
            b"\r\nGET /hola/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "chunk size -1",
            post("Transfer-Encoding: chunked\r\n", "-1\r\nhola\r\n0\r\n\r\n"),
        ),
        (
            "chunk size 0x4",
            post("Transfer-Encoding: chunked\r\n", "0x4\r\nhola\r\n0\r\n\r\n"),
        ),
        (
            "chunk size overflow",
            post(
                "Transfer-Encoding: chunked\r\n",
                "fffffffffffffffffff\r\nhola\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunk size empty",
            post("Transfer-Encoding: chunked\r\n", "\r\nhola\r\n0\r\n\r\n"),
        ),
        (
            "chunk size with a space",
            post("Transfer-Encoding: chunked\r\n", "4 \r\nhola\r\n0\r\n\r\n"),
        ),
        (
            "chunk without its CRLF",
            post("Transfer-Encoding: chunked\r\n", "4\r\nholaX0\r\n\r\n"),
        ),
        (
            "chunk data longer than its size",
            post("Transfer-Encoding: chunked\r\n", "2\r\nhola\r\n0\r\n\r\n"),
        ),
        (
            "chunk size bare LF",
            post("Transfer-Encoding: chunked\r\n", "4\nhola\r\n0\r\n\r\n"),
        ),
        (
            "two hosts",
            b"GET /hola/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        ),
        ("no host on 1.1", b"GET /hola/x HTTP/1.1\r\n\r\n".to_vec()),
        ("no host on 1.0", b"GET /hola/x HTTP/1.0\r\n\r\n".to_vec()),
        (
            "HTTP/1.2",
            b"GET /hola/x HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/2.0",
            b"GET /hola/x HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("HTTP/0.9", b"GET /hola/x\r\n\r\n".to_vec()),
        (
            "absolute form",
            b"GET http://y/hola/x?q=1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "asterisk form",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "unknown method",
            b"BREW /hola/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "lower-case method",
            b"get /hola/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "two spaces",
            b"GET  /hola/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "target with a space",
            b"GET /hola/x y HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "non-ascii target",
            b"GET /hola/\xc3\xb1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "non-ascii host",
            b"GET /hola/x HTTP/1.1\r\nHost: \xc3\xb1\r\n\r\n".to_vec(),
        ),
        ("long target", {
            let mut r = b"GET /hola/".to_vec();
            r.extend(std::iter::repeat_n(b'a', 20_000));
            r.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            r
        }),
        ("long head", {
            let mut r = b"GET /hola/x HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', 20_000));
            r.extend_from_slice(b"\r\n\r\n");
            r
        }),
        ("many headers", {
            let mut r = b"GET /hola/x HTTP/1.1\r\nHost: x\r\n".to_vec();
            for i in 0..100 {
                r.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
            r
        }),
        (
            "garbage",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
        ),
        (
            "connection close then more",
            format!("GET /hola/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n{then_get}")
                .into_bytes(),
        ),
        (
            "HTTP/1.0 keep-alive then more",
            format!("GET /hola/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n{then_get}")
                .into_bytes(),
        ),
        ("head", b"HEAD /hola/x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    cases.sort_by(|a, b| a.0.cmp(b.0));
    cases.into_iter().map(|(n, b)| (n.to_owned(), b)).collect()
}

#[tokio::test]
async fn enchufe_and_hyper_agree_on_raw_requests() {
    bounded(async {
        let mut cases = corpus();
        cases.extend(shapes());
        // Every case on its own pair of servers, all at once: each waits
        // for a moment of silence to know the servers are done.
        let runs = cases.iter().map(|(_, bytes)| run_case(bytes.clone()));
        let outcomes = futures::future::join_all(runs).await;
        let allowed: BTreeMap<&str, &str> = ALLOWED.iter().copied().collect();
        let mut failures = Vec::new();
        for ((name, bytes), (ours, theirs)) in cases.iter().zip(outcomes) {
            let differs = ours != theirs;
            match (differs, allowed.contains_key(name.as_str())) {
                (true, false) => failures.push(format!(
                    "{name}: {}\n  enchufe: {}\n  hyper:   {}",
                    short(bytes),
                    ours.summary(),
                    theirs.summary()
                )),
                (false, true) => failures.push(format!("{name}: listed in ALLOWED, but agrees")),
                _ => {}
            }
        }
        for name in allowed.keys() {
            if !cases.iter().any(|(n, _)| n == name) {
                failures.push(format!("{name}: listed in ALLOWED, but no such case"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    })
    .await;
}
