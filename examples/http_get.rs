//! An HTTP GET written by hand over a `TcpStream`, as the course's web client
//! does it: HTTP is text agreed on top of the same sockets. Write the request
//! line and headers, then read the status line, the headers up to the blank
//! line, and exactly `Content-Length` bytes of body. Prints the head on
//! stderr and the body on stdout; exits with 22 (as `curl --fail`) when the
//! status is 400 or more, with 1 and the error's message when it fails.
//!
//! ```text
//! cargo run --example http_hello                 # in one terminal
//! cargo run --example http_get -- --url http://127.0.0.1:8080/hola/mundo
//! ```

use std::time::Duration;

use clap::Parser;
use reply::{read_line, Reply};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "support/http_reply.rs"]
mod reply;

/// Most bytes of the reply's head and body: a wrong server must not make us
/// buffer without end.
const MAX_HEAD: u64 = 64 * 1024;
const MAX_BODY: u64 = 16 * 1024 * 1024;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Sends GET URL and prints the reply.
#[derive(Parser)]
struct Args {
    /// What to get: http://HOST:PORT/PATH.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    url: String,
    /// Seconds to wait for the whole exchange.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

/// `GET path` from `http://host:port/path` (the port is not optional).
pub(crate) async fn get(url: &str) -> Result<Reply, Error> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = BufReader::new(TcpStream::connect(authority).await?);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.get_mut().write_all(request.as_bytes()).await?;

    // "HTTP/1.1 200 OK": the version, the status code, a reason for people.
    let mut reply = Reply::default();
    let mut head = (&mut stream).take(MAX_HEAD).lines();
    let line = read_line(&mut head).await?;
    let mut parts = line.split(' ');
    reply.status = match (parts.next(), parts.next().map(str::parse)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/1.") => status,
        _ => return Err(format!("{authority} is not an HTTP server: {line:?}").into()),
    };
    reply.status_line = line;
    // Then one `Name: value` header per line, up to a blank line.
    let mut length = None;
    let mut line = read_line(&mut head).await?;
    while !line.is_empty() {
        let (name, value) = line.split_once(':').ok_or("a header line without ':'")?;
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>());
        }
        reply.headers.push((name, value));
        line = read_line(&mut head).await?;
    }
    // Then the body: exactly Content-Length bytes, or else up to the close
    // (which we asked for).
    match length {
        Some(Ok(n)) if n <= MAX_BODY => {
            reply.body.resize(n as usize, 0);
            stream.read_exact(&mut reply.body).await?;
        }
        Some(_) => return Err("Content-Length invalid or over 16 MiB".into()),
        None => drop(stream.take(MAX_BODY).read_to_end(&mut reply.body).await?),
    }
    Ok(reply)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let limit = Duration::from_secs(args.timeout);
    let reply = match tokio::time::timeout(limit, get(&args.url)).await {
        Ok(reply) => reply,
        Err(_) => Err(format!("no whole reply within {} s", args.timeout).into()),
    };
    let reply = reply.unwrap_or_else(|e| {
        eprintln!("error: GET {}: {e}", args.url); // the URL names the server
        std::process::exit(1)
    });
    reply.print();
    // As `curl --fail`: a script can tell a refusal from a page.
    std::process::exit(if reply.status >= 400 { 22 } else { 0 });
}
