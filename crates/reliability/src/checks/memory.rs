//! Frames that hold memory: a header announcing 4 GiB, partial 8 MiB
//! frames held by 1,000 connections, and frames trickled a byte a second.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::kit::*;
use crate::proc::{self, mib};

use super::attack::{probe, probe_every};
use crate::doors::Door;

/// A header announcing 4 GiB: refused on the header, nothing allocated.
pub(crate) async fn header_4gib(cx: &Cx) -> Result<Vec<Row>, String> {
    let srv = cx.echo("header", &[]).await?;
    // One ordinary request first, so that what the first connection ever
    // allocates (the registry, a worker's buffers) is not counted.
    probe(srv.addr, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let _ = proc::reset_peak(srv.pid);
    let mut stream = TcpStream::connect(srv.addr)
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    stream
        .write_all(&u32::MAX.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let closed = until_closed(&mut stream, Duration::from_secs(5))
        .await
        .is_ok();
    let took = start.elapsed();
    let grew = peak_growth(srv.pid, base);
    let alive = probe(srv.addr, Duration::from_secs(2)).await.is_some();
    srv.stop().await;
    Ok(vec![row(
        "4 GiB header (0xFFFFFFFF)",
        format!(
            "closed in {}, peak RSS {:+}, next client {}",
            ms(took),
            mib(grew),
            if alive { "served" } else { "NOT served" }
        ),
        "closed < 1 s, RSS < +1 MiB, served",
        closed && took < Duration::from_secs(1) && grew < 1 << 20 && alive,
    )])
}

/// The server's budget for large frames arriving on all connections
/// together (`max_total_partial_bytes`, default of `server::Config`), and
/// what each connection may hold outside it (its first 128 KiB).
pub(crate) const PARTIAL_BUDGET: u64 = 256 << 20;
pub(crate) const UNCHARGED: u64 = 128 << 10;

/// 1,000 connections each send all but one byte of an 8 MiB frame and
/// hold it: without one budget for them all that is 8 GiB.
pub(crate) async fn partial_frames(cx: &Cx) -> Result<Vec<Row>, String> {
    let n = cx.n(1000);
    let srv = cx.echo("partial", &[]).await?;
    probe(srv.addr, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let _ = proc::reset_peak(srv.pid);
    let addr = srv.addr;
    let chunk: Arc<[u8]> = vec![7u8; 1 << 20].into();
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let chunk = chunk.clone();
        tasks.spawn(async move {
            let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).await.ok()?;
            stream.write_all(&(FRAME as u32).to_be_bytes()).await.ok()?;
            let mut left = FRAME as usize - 1;
            while left > 0 {
                let k = left.min(chunk.len());
                // Blocks once the server stops reading this connection.
                stream.write_all(&chunk[..k]).await.ok()?;
                left -= k;
            }
            std::future::pending::<()>().await;
            Some(stream)
        });
    }
    // The ordinary client, every half second for 15 s (within the frame
    // deadline of 30 s, which would cut the attackers), from a thread of
    // its own: the attackers' 1,000 tasks share this process's runtime.
    let probes = probe_every(
        Door::Frames,
        addr,
        Duration::from_secs(15),
        Duration::from_millis(500),
        Duration::from_secs(2),
    )
    .await;
    let served = probes.iter().filter(|(_, t)| t.is_some()).count();
    let missed: Vec<String> = probes
        .iter()
        .filter(|(_, t)| t.is_none())
        .map(|(at, _)| format!("{:.1} s", at.as_secs_f64()))
        .collect();
    let probes = probes.len();
    let grew = peak_growth(srv.pid, base);
    tasks.shutdown().await;
    let mut srv = srv;
    let died = srv.exited();
    srv.stop().await;
    let bound = PARTIAL_BUDGET + n as u64 * UNCHARGED + (64 << 20);
    Ok(vec![
        row(
            format!("{n} connections holding 8 MiB - 1 of an 8 MiB frame"),
            format!("peak RSS {:+}", mib(grew)),
            &format!(
                "RSS < budget 256 MiB + {n} x 128 KiB + 64 MiB = {} MiB, served",
                bound >> 20
            ),
            grew < bound as i64,
        ),
        row(
            "  ordinary client meanwhile",
            format!(
                "served {served}/{probes}{}{}",
                if missed.is_empty() {
                    String::new()
                } else {
                    format!(" (missed at {})", missed.join(", "))
                },
                died.map_or(String::new(), |status| format!(
                    "; the server DIED: {status}"
                ))
            ),
            "served every time",
            served == probes && probes > 0,
        ),
    ])
}

/// 1,000 connections announce 8 MiB each and send a byte a second.
pub(crate) async fn trickle(cx: &Cx) -> Result<Vec<Row>, String> {
    let n = cx.n(1000);
    let srv = cx.echo("trickle", &[]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let _ = proc::reset_peak(srv.pid);
    let addr = srv.addr;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        tasks.spawn(async move {
            let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).await.ok()?;
            stream.write_all(&(FRAME as u32).to_be_bytes()).await.ok()?;
            let mut buf = [0u8; 64];
            let deadline = tokio::time::sleep(Duration::from_secs(60));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = stream.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return Some(start.elapsed()),
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        if stream.write_all(&[1]).await.is_err() {
                            return Some(start.elapsed());
                        }
                    }
                    () = &mut deadline => return None,
                }
            }
        });
    }
    // The ordinary client, every half second while the trickle lasts.
    let mut served = 0;
    let mut probes = 0;
    while !tasks.is_empty() && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        probes += 1;
        served += usize::from(probe(addr, Duration::from_secs(2)).await.is_some());
    }
    let mut cut = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(t)) = done {
            cut.push(t);
        }
    }
    let grew = peak_growth(srv.pid, base);
    let mut srv = srv;
    let died = srv.exited();
    srv.stop().await;
    let slowest = cut.iter().max().copied().unwrap_or_default();
    let ok_cut = cut.len() == n && slowest < Duration::from_secs(15);
    Ok(vec![
        row(
            format!("{n} trickling 8 MiB headers (1 byte/s)"),
            format!(
                "{}/{n} cut, last at {:.1} s; peak RSS {:+}",
                cut.len(),
                slowest.as_secs_f64(),
                mib(grew)
            ),
            "all cut by the first-frame deadline (10 s; frame_timeout 30 s) + 5 s, RSS < +64 MiB",
            ok_cut && grew < 64 << 20,
        ),
        row(
            "  ordinary client during the trickle",
            format!(
                "served {served}/{probes}{}",
                died.map_or(String::new(), |status| format!(
                    "; the server DIED: {status}"
                ))
            ),
            "served every time",
            served == probes && probes > 0,
        ),
    ])
}
