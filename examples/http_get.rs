//! An HTTP GET written by hand over a `TcpStream`, as the course's web client
//! does it: HTTP is text agreed on top of the same sockets. Write the request
//! line and headers, then read the status line, the headers up to the blank
//! line, and exactly `Content-Length` bytes of body. Prints the head on
//! stderr and the body on stdout; exits with 22 (as `curl --fail`) when the
//! status is 400 or more.
//!
//! ```text
//! cargo run --example http_hello                 # in one terminal
//! cargo run --example http_get -- --url http://127.0.0.1:8080/hola/mundo
//! ```

use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;

/// Most bytes of the reply's head, and of its body: a wrong server must not
/// make us buffer without end.
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

/// A reply: status code, its line, headers, body.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) status_line: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
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
    let mut line = read_line(&mut head).await?;
    while !line.is_empty() {
        let (name, value) = line.split_once(':').ok_or("a header line without ':'")?;
        reply
            .headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
        line = read_line(&mut head).await?;
    }

    // Then the body: exactly Content-Length bytes, or else up to the close
    // (which we asked for).
    let length = reply
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    match length.map(|(_, n)| n.parse::<u64>()) {
        Some(Ok(n)) if n <= MAX_BODY => {
            reply.body.resize(n as usize, 0);
            stream.read_exact(&mut reply.body).await?;
        }
        Some(_) => return Err("Content-Length invalid or over 16 MiB".into()),
        None => drop(stream.take(MAX_BODY).read_to_end(&mut reply.body).await?),
    }
    Ok(reply)
}

/// The next line of the head, without its CRLF; an error when the server
/// hangs up first, or sends more than the head may hold (`MAX_HEAD`).
async fn read_line(head: &mut Lines<impl AsyncBufRead + Unpin>) -> Result<String, Error> {
    match head.next_line().await {
        Ok(Some(line)) => Ok(line),
        Err(e) if e.kind() != std::io::ErrorKind::ConnectionReset => Err(e.into()),
        _ => Err("the server hung up without a whole HTTP reply head".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let reply = tokio::time::timeout(Duration::from_secs(args.timeout), get(&args.url))
        .await
        .map_err(|_| format!("no whole reply within {} s", args.timeout))??;
    eprintln!("{}", reply.status_line);
    for (name, value) in &reply.headers {
        eprintln!("{name}: {value}");
    }
    std::io::Write::write_all(&mut std::io::stdout(), &reply.body)?;
    if reply.status >= 400 {
        // As `curl --fail`: a script can tell a refusal from a page.
        std::process::exit(22);
    }
    Ok(())
}
