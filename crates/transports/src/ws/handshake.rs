//! The upgrade: one HTTP request head read and answered.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::error::{Error, Result};
use super::options::Options;
use super::stream::WsIo;

/// What [`accept`] did with a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Accepted<Io> {
    /// It was a WebSocket upgrade: here is the stream of frames (boxed:
    /// the other variant is empty).
    WebSocket(Box<WsIo<Io>>),
    /// It was `GET /` and the page was sent; the connection is closed.
    Page,
}

/// Reads one HTTP request head from `io` (within `deadline`, at most
/// `options.max_request_bytes`), and either upgrades it to a WebSocket
/// whose messages are at most `max_message` bytes, or answers `GET /` with
/// the page, or answers an error status.
///
/// # Errors
/// [`Error`]: each after answering the status it names, when it could.
pub async fn accept<Io>(
    mut io: Io,
    options: &Options,
    max_message: usize,
    deadline: Duration,
) -> Result<Accepted<Io>>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let outcome = tokio::time::timeout(deadline, async {
        let head = read_head(&mut io, options.max_request_bytes).await;
        let answer = head.and_then(|head| respond(&head, options));
        match &answer {
            Ok(Answer::Upgrade(key)) => {
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    derive_accept_key(key.as_bytes())
                );
                io.write_all(response.as_bytes()).await?;
            }
            Ok(Answer::Page(page)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    page.len()
                );
                io.write_all(head.as_bytes()).await?;
                io.write_all(page).await?;
                io.shutdown().await?;
            }
            Err(e) => {
                let status = match e {
                    Error::TooLarge { .. } => Some("431 Request Header Fields Too Large"),
                    Error::NotFound(_) => Some("404 Not Found"),
                    Error::Forbidden(_) => Some("403 Forbidden"),
                    Error::BadRequest(_) => Some("400 Bad Request"),
                    _ => None,
                };
                if let Some(status) = status {
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    // Best effort: the error is the request's, not this write's.
                    let _ = io.write_all(response.as_bytes()).await;
                    let _ = io.shutdown().await;
                }
            }
        }
        answer
    })
    .await
    .map_err(|_| Error::Timeout(deadline))??;
    match outcome {
        Answer::Upgrade(_) => Ok(Accepted::WebSocket(Box::new(WsIo::new(
            io,
            max_message,
            options.message_timeout,
        )))),
        Answer::Page(_) => Ok(Accepted::Page),
    }
}

/// What to answer a request head with.
pub(super) enum Answer<'a> {
    /// Switch to WebSocket; the client's key.
    Upgrade(String),
    /// The page.
    Page(&'a Bytes),
}

/// Reads until the blank line that ends a request head, byte by byte past
/// what is buffered, so nothing after the head is consumed (a client may
/// not send before the `101`, but reading exactly the head costs nothing).
async fn read_head<Io: AsyncRead + Unpin>(io: &mut Io, limit: usize) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024.min(limit));
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= limit {
            return Err(Error::TooLarge { limit });
        }
        if io.read(&mut byte).await? == 0 {
            return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

pub(super) fn respond<'a>(head: &[u8], options: &'a Options) -> Result<Answer<'a>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::BadRequest("incomplete head".into())),
        Err(e) => return Err(Error::BadRequest(format!("not HTTP: {e}"))),
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if request.method != Some("GET") {
        return Err(Error::BadRequest(format!(
            "method {} (only GET)",
            request.method.unwrap_or("?")
        )));
    }
    let path = request.path.unwrap_or("/");
    if !has_token("Upgrade", "websocket") {
        return match &options.page {
            Some(page) if path == "/" || path.starts_with("/?") => Ok(Answer::Page(page)),
            _ => Err(Error::NotFound(path.to_owned())),
        };
    }
    if !has_token("Connection", "upgrade") {
        return Err(Error::BadRequest(
            "Upgrade without Connection: upgrade".into(),
        ));
    }
    if let (Some(allowed), Some(origin)) = (&options.allowed_origins, header("Origin")) {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Err(Error::Forbidden(origin.to_owned()));
        }
    }
    if header("Sec-WebSocket-Version") != Some("13") {
        return Err(Error::BadRequest("Sec-WebSocket-Version is not 13".into()));
    }
    match header("Sec-WebSocket-Key") {
        Some(key) if !key.is_empty() => Ok(Answer::Upgrade(key.trim().to_owned())),
        _ => Err(Error::BadRequest("no Sec-WebSocket-Key".into())),
    }
}
