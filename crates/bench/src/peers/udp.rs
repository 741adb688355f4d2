//! UDP: `enchufe::udp`'s server and a raw tokio `UdpSocket` loop, driven by
//! raw sockets each keeping a window of datagrams in flight.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enchufe::udp::handler_fn;
use enchufe::UdpServer;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::{Served, Spec};
use crate::error::{Error, Result};
use crate::payload::{check, Payloads};

/// Largest datagram either server takes: the most UDP carries over IPv4.
const MAX: usize = 65_507;

/// How long a socket waits for an echo before it counts every datagram
/// in flight as lost and sends a fresh window: far above a loopback round
/// trip, so only a datagram the kernel dropped counts.
const LOST_AFTER: Duration = Duration::from_millis(200);

/// `enchufe::udp::UdpServer` with an echo handler, its defaults otherwise.
pub(crate) async fn enchufe(addr: SocketAddr) -> Result<Served> {
    let server = UdpServer::bind(addr)
        .await
        .map_err(|e| Error::harness(e.to_string()))?;
    let local = server
        .local_addr()
        .map_err(|e| Error::harness(e.to_string()))?;
    let handle = server.serve(handler_fn(|datagram: Bytes, _ctx| async move {
        Ok::<_, std::convert::Infallible>(Some(datagram))
    }));
    Ok((
        local,
        tokio::spawn(async move {
            let _serving = handle;
            std::future::pending::<()>().await;
        }),
    ))
}

/// The raw loop: one task, one buffer, `recv_from` then `send_to`.
pub(crate) async fn raw(addr: SocketAddr) -> Result<Served> {
    let socket = UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    Ok((
        local,
        tokio::spawn(async move {
            let mut buf = vec![0; MAX];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let _ = socket.send_to(&buf[..n], from).await;
            }
        }),
    ))
}

/// `conns` sockets, each with `depth` datagrams in flight. Each datagram
/// starts with its sequence number (8 bytes, little-endian), then the
/// payload's bytes from 8 on; replies may come in any order (enchufe
/// answers each datagram from its own task), so each is matched by its
/// number, checked byte for byte, and must come once.
pub(crate) async fn load(
    spec: &Spec,
    stop: &Arc<AtomicBool>,
    tasks: &mut JoinSet<Result<(u64, u64)>>,
) -> Result<()> {
    if spec.size < 8 {
        return Err(Error::harness("UDP payloads need at least 8 bytes"));
    }
    let payloads = Payloads::new(spec.size);
    for conn in 0..spec.conns {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(spec.addr).await?;
        let (payloads, stop, depth) = (payloads.clone(), stop.clone(), spec.depth);
        tasks.spawn(window(conn, socket, payloads, depth, stop));
    }
    Ok(())
}

async fn window(
    conn: usize,
    socket: UdpSocket,
    payloads: Payloads,
    depth: usize,
    stop: Arc<AtomicBool>,
) -> Result<(u64, u64)> {
    let mut in_flight = HashSet::with_capacity(depth);
    // Counted lost; an echo that still comes (late) is checked and counted.
    let mut given_up = HashSet::new();
    let (mut next, mut received, mut lost) = (0u64, 0u64, 0u64);
    let mut out = vec![0; payloads.get(0).len()];
    let mut buf = vec![0; MAX];
    loop {
        while in_flight.len() < depth && !stop.load(Relaxed) {
            out.copy_from_slice(payloads.get(next));
            out[..8].copy_from_slice(&next.to_le_bytes());
            socket.send(&out).await?;
            in_flight.insert(next);
            next += 1;
        }
        if in_flight.is_empty() {
            return Ok((received, lost));
        }
        let n = match tokio::time::timeout(LOST_AFTER, socket.recv(&mut buf)).await {
            Ok(n) => n?,
            Err(_) => {
                lost += in_flight.len() as u64;
                given_up.extend(in_flight.drain());
                continue;
            }
        };
        let echo = &buf[..n];
        let seq = echo
            .first_chunk::<8>()
            .map(|s| u64::from_le_bytes(*s))
            .ok_or_else(|| Error::Mismatch {
                conn,
                frame: received,
                detail: format!("{n} bytes back"),
            })?;
        if given_up.remove(&seq) {
            lost -= 1;
        } else if !in_flight.remove(&seq) {
            return Err(Error::Mismatch {
                conn,
                frame: seq,
                detail: "an echo for no datagram in flight".into(),
            });
        }
        check(conn, seq, &echo[8..], &payloads.get(seq)[8..])?;
        received += 1;
    }
}
