//! The clients the harness runs in their own processes besides the load
//! generator: a holder of idle connections, and two abusive clients. Each
//! is bounded in time and bytes and prints one JSON line when done.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::payload::{check, Payloads};

/// Connections opened at once. The listen backlog of a Tokio listener is
/// 1024; staying far below it means no SYN is dropped and retried a second
/// later, which would make opening 10,000 connections take minutes.
const CONNECTING: usize = 64;

/// What an abusive client did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AbuseReport {
    /// Connections it opened.
    pub(crate) conns: u64,
    /// Bytes it wrote, over all connections.
    pub(crate) sent_bytes: u64,
    /// Connections the server closed before the end.
    pub(crate) closed_by_server: u64,
    /// How long it ran.
    pub(crate) secs: f64,
}

/// Opens `conns` connections, echoes one 16-byte frame on each (so every
/// connection has been accepted, served and has gone idle), prints
/// `held N`, then holds them for `secs`.
pub(crate) async fn hold(addr: SocketAddr, conns: usize, secs: f64) -> Result<()> {
    let payload = Payloads::new(16).get(0).clone();
    let streams: Vec<TcpStream> = futures::stream::iter(0..conns)
        .map(|conn| {
            let payload = payload.clone();
            async move {
                let mut stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&payload);
                stream.write_all(&frame).await?;
                let mut echo = vec![0; frame.len()];
                stream.read_exact(&mut echo).await?;
                check(conn, 0, &echo, &frame)?;
                Ok::<_, Error>(stream)
            }
        })
        .buffer_unordered(CONNECTING)
        .try_collect()
        .await?;
    println!("held {}", streams.len());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    drop(streams);
    Ok(())
}

/// One connection sending 8 MiB frames (enchufe's default limit, so each is
/// accepted and echoed) and never reading, for `secs` or until `max_bytes`
/// are written; the connection then stays open, unread, until `secs`.
pub(crate) async fn never_read(addr: SocketAddr, secs: f64, max_bytes: u64) -> Result<AbuseReport> {
    const LEN: usize = 8 << 20;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut stream = TcpStream::connect(addr).await?;
    let mut frame = (LEN as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(Payloads::new(LEN).get(0));
    let mut sent = 0u64;
    let mut closed = 0;
    'frames: while sent < max_bytes {
        let mut rest = &frame[..];
        while !rest.is_empty() {
            match tokio::time::timeout_at(deadline, stream.write(rest)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = 1;
                    break 'frames;
                }
                Ok(Ok(n)) => {
                    rest = &rest[n..];
                    sent += n as u64;
                }
                Err(_) => break 'frames, // time is up, the socket is full
            }
        }
    }
    if closed == 0 {
        tokio::time::sleep_until(deadline).await;
    }
    Ok(AbuseReport {
        conns: 1,
        sent_bytes: sent,
        closed_by_server: closed,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// `conns` connections, each sending a header that declares 8 MiB − 1
/// bytes, then one byte of the body per second, for `secs`.
pub(crate) async fn trickle(addr: SocketAddr, conns: usize, secs: f64) -> Result<AbuseReport> {
    let declared = ((8u32 << 20) - 1).to_be_bytes();
    let start = Instant::now();
    let mut streams: Vec<Option<TcpStream>> = futures::stream::iter(0..conns)
        .map(|_| async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            stream.write_all(&declared).await?;
            Ok::<_, Error>(Some(stream))
        })
        .buffer_unordered(CONNECTING)
        .try_collect()
        .await?;
    let mut sent = (conns * declared.len()) as u64;
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while tokio::time::timeout_at(deadline, tick.tick()).await.is_ok() {
        for slot in &mut streams {
            let Some(stream) = slot else { continue };
            // One byte always fits in the socket buffer of a live connection.
            match stream.try_write(b"x") {
                Ok(1) => sent += 1,
                _ => *slot = None,
            }
        }
    }
    let closed = streams.iter().filter(|s| s.is_none()).count() as u64;
    Ok(AbuseReport {
        conns: conns as u64,
        sent_bytes: sent,
        closed_by_server: closed,
        secs: start.elapsed().as_secs_f64(),
    })
}
