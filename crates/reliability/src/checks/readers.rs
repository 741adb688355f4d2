//! Clients that never read: the server must hold them to their byte
//! budget and drop them.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::child::Server;
use crate::doors::{self, Door};
use crate::kit::*;
use crate::proc::{self, mib};

use super::attack::probe;

/// A client that never reads while the server pushes 1 GiB at it.
pub(crate) async fn never_reads_pushes(cx: &Cx) -> Result<Vec<Row>, String> {
    let srv = cx.own("pushes", "push", &[]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base_fds = proc::fds(srv.pid).map_err(|e| e.to_string())?;
    let base = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let _ = proc::reset_peak(srv.pid);
    let mut stream = TcpStream::connect(srv.addr)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&frame(b"go"))
        .await
        .map_err(|e| e.to_string())?;
    proc::wait_fds(srv.pid, Duration::from_secs(5), |n| n > base_fds).await;
    let dropped = proc::wait_fds(srv.pid, Duration::from_secs(30), |n| n <= base_fds).await;
    let grew = peak_growth(srv.pid, base);
    let served = probe(srv.addr, Duration::from_secs(2)).await.is_some();
    drop(stream);
    srv.stop().await;
    let budget = QUEUED + 2 * FRAME + (4 << 20);
    Ok(vec![row(
        "never-reading client, 1 GiB of 8 MiB pushes",
        format!(
            "peak RSS {:+}; dropped after {}; next client {}",
            mib(grew),
            dropped.map_or("never (30 s)".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            if served { "served" } else { "NOT served" }
        ),
        "RSS < queued budget 4 MiB + 2 frames + 4 MiB = +24 MiB; dropped within write_timeout 10 s + 5 s",
        grew < budget as i64 && dropped.is_some_and(|d| d < Duration::from_secs(15)) && served,
    )])
}

/// A client that sends 8 MiB echo requests and never reads the replies.
pub(crate) async fn never_reads_echoes(cx: &Cx) -> Result<Vec<Row>, String> {
    let srv = cx.echo("echoes", &[]).await?;
    let request = frame(&vec![0x33; FRAME as usize]);
    let row = never_reader(
        &srv,
        Door::Frames,
        "never-reading client, 8 MiB echoes",
        request,
        128,
    )
    .await;
    srv.stop().await;
    Ok(vec![row?])
}

/// A client of `door` that sends `unit` up to `count` times and never
/// reads what the server answers: the server's peak RSS growth must stay
/// within the connection's byte budget, and the connection be dropped.
pub(crate) async fn never_reader(
    srv: &Server,
    door: Door,
    label: &str,
    unit: Vec<u8>,
    count: usize,
) -> Result<Row, String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base_fds = proc::fds(srv.pid).map_err(|e| e.to_string())?;
    let base = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let _ = proc::reset_peak(srv.pid);
    let addr = srv.addr;
    let writer = tokio::spawn(async move {
        let mut stream = doors::open(door, Ipv4Addr::LOCALHOST, addr, false)
            .await
            .ok()?;
        let mut sent = 0usize;
        for _ in 0..count {
            if stream.write_all(&unit).await.is_err() {
                break;
            }
            sent += 1;
        }
        // Hold the socket (unread) until told to stop.
        tokio::time::sleep(Duration::from_secs(60)).await;
        Some(sent)
    });
    proc::wait_fds(srv.pid, Duration::from_secs(5), |n| n > base_fds).await;
    let dropped = proc::wait_fds(srv.pid, Duration::from_secs(40), |n| n <= base_fds).await;
    let grew = peak_growth(srv.pid, base);
    let served = doors::probe(door, addr, Duration::from_secs(2))
        .await
        .is_some();
    writer.abort();
    let budget = QUEUED + 2 * FRAME + (4 << 20);
    Ok(row(
        label,
        format!(
            "peak RSS {:+}; dropped after {}; next client {}",
            mib(grew),
            dropped.map_or("never (40 s)".into(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
            if served { "served" } else { "NOT served" }
        ),
        "RSS < +24 MiB (as above); dropped",
        grew < budget as i64 && dropped.is_some() && served,
    ))
}
