//! Every attack door by door (frames, HTTP, WebSocket) against one `doors`
//! server: slowloris, an unfinished unit, a reader that never reads, empty
//! connections, and the idle memory of each.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::checks::attack::under_attack;
use crate::checks::readers::never_reader;
use crate::doors::*;
use crate::kit::{flood, frame, peak_growth, row, Cx, Row, FRAME};
use crate::proc;

/// 2,000 slowloris and 2,000 idle connections per door, reconnecting when
/// cut, against one `doors` server, while the door's ordinary client (and
/// `curl`, for HTTP) is served; then the same against the same server
/// behind TLS, the attackers stuck in the handshake.
pub(crate) async fn slowloris(cx: &Cx) -> Result<Vec<Row>, String> {
    let (nslow, nidle) = (cx.n(2000), cx.n(2000));
    let srv = cx.own("doors-slowloris", "doors", &[]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = proc::fds(srv.pid).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for door in Door::ALL {
        rows.extend(under_attack(&srv, door, nslow, nidle, door.name()).await?);
        // The next door's figures start from a server without attackers.
        proc::wait_fds(srv.pid, Duration::from_secs(10), |n| n <= base + 8).await;
    }
    srv.stop().await;
    let cert = cx.logs.join("doors-tls-cert.pem");
    let cert_arg = cert.to_string_lossy();
    let srv = cx
        .own("doors-tls", "doors", &["--tls", cert_arg.as_ref()])
        .await?;
    let ca = std::fs::read(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    if let Ok(mut trusted) = TLS_CA.lock() {
        *trusted = ca;
    }
    rows.extend(under_attack(&srv, Door::Tls, nslow, nidle, "TLS").await?);
    srv.stop().await;
    Ok(rows)
}

/// A message started and never finished, on each door of one server, as
/// the connection's first unit and after one served: cut by the deadline
/// (HTTP: `408`; WebSocket: Close 1008).
pub(crate) async fn unfinished(cx: &Cx) -> Result<Vec<Row>, String> {
    let srv = cx.own("doors-unfinished", "doors", &[]).await?;
    let addr = srv.addr;
    let attempt = |door: Door, served: bool| async move {
        let from = Ipv4Addr::new(127, 0, 0, 2);
        let mut stream = open(door, from, addr, served)
            .await
            .map_err(|e| format!("{}: {e}", door.name()))?;
        let start = Instant::now();
        let (first, each) = door.unfinished();
        let mut got = Vec::new();
        let cut = tokio::time::timeout(Duration::from_secs(60), async {
            if stream.write_all(&first).await.is_ok() {
                hold(&mut stream, Some(each), &mut got).await;
            }
        })
        .await
        .is_ok();
        Ok::<_, String>((door, served, cut.then(|| start.elapsed()), got))
    };
    let attempts = Door::ALL
        .into_iter()
        .flat_map(|door| [(door, false), (door, true)])
        .map(|(door, served)| attempt(door, served));
    let ends = futures::future::join_all(attempts).await;
    let next = probe(Door::Http, addr, Duration::from_secs(2))
        .await
        .is_some();
    srv.stop().await;
    let mut rows = Vec::new();
    for end in ends {
        let (door, served, cut, got) = end?;
        // The deadline that applies: the first unit's (the front door's
        // wait for a request head, and the first frame's), or the one for
        // completing a unit once a first was served.
        let (limit, deadline) = match (door, served) {
            (Door::Http, true) => (10, "the HTTP door's head_timeout 10 s"),
            (Door::Http, false) => (10, "the head deadline (handshake_timeout 10 s)"),
            (_, false) => (10, "first_frame_timeout 10 s"),
            (_, true) => (30, "frame_timeout 30 s"),
        };
        let (answer, expected, answered) = match door {
            Door::Frames | Door::Tls => (String::new(), "", true),
            Door::Http => {
                let status = got.split(|&b| b == b'\r').next().unwrap_or(&[]);
                let status = String::from_utf8_lossy(status).into_owned();
                let ok = status.starts_with("HTTP/1.1 408");
                let shown = if status.is_empty() {
                    "answered nothing".into()
                } else {
                    format!("answered {status:?}")
                };
                (shown, "408 ", ok)
            }
            Door::Ws => {
                let code = close_code(&got);
                let shown = code.map_or("no Close frame".into(), |c| format!("Close {c}"));
                (shown, "Close 1008 ", code == Some(1008))
            }
        };
        let took = cut.map_or("NOT cut within 60 s".into(), |d| {
            format!("cut after {:.1} s", d.as_secs_f64())
        });
        let when = if served {
            "after one served"
        } else {
            "as the first"
        };
        rows.push(row(
            format!("{}: a {} trickled {when}", door.name(), door.unit()),
            if answer.is_empty() {
                took
            } else {
                format!("{took}, {answer}")
            },
            &format!("{expected}within {deadline} + 5 s"),
            answered && cut.is_some_and(|d| d < Duration::from_secs(limit + 5)),
        ));
    }
    rows.push(row(
        "  the next HTTP request",
        if next { "served" } else { "NOT served" }.into(),
        "served",
        next,
    ));
    Ok(rows)
}

/// A client of each door that never reads: frames (8 MiB echoes), HTTP
/// (pipelined requests for 64 KiB), WebSocket (pings, each owed a pong).
pub(crate) async fn never_reads(cx: &Cx) -> Result<Vec<Row>, String> {
    let big = b"GET /big HTTP/1.1\r\nHost: enchufe\r\n\r\n";
    let units: [(Door, String, Vec<u8>, usize); 3] = [
        (
            Door::Frames,
            "8 MiB echoes".into(),
            frame(&vec![0x33; FRAME as usize]),
            128,
        ),
        (
            Door::Http,
            format!("pipelined GETs of {} KiB", crate::serve::BIG_LEN >> 10),
            big.to_vec(),
            1_000_000,
        ),
        (
            Door::Ws,
            "125-byte pings".into(),
            ws_frame(true, PING, &[0x5a; 125]),
            1_000_000,
        ),
    ];
    // At once, each on a server of its own (its memory its own): the
    // check waits for each drop, the write deadline, once.
    let runs = units
        .into_iter()
        .map(|(door, what, unit, count)| async move {
            let name = format!("doors-never-reads-{door:?}");
            let srv = cx.own(&name, "doors", &[]).await?;
            let label = format!("{}: never-reading client, {what}", door.name());
            let row = never_reader(&srv, door, &label, unit, count).await;
            srv.stop().await;
            row
        });
    futures::future::join_all(runs).await.into_iter().collect()
}

/// 20,000 connections that send nothing, then 20,000 WebSocket upgrades
/// closed without a message: lines in the server's log.
pub(crate) async fn empty(cx: &Cx) -> Result<Vec<Row>, String> {
    let n = cx.n(20_000);
    let srv = cx.own("doors-empty", "doors", &[]).await?;
    let addr = srv.addr;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = || {
        std::fs::read_to_string(&srv.log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let mut rows = Vec::new();
    for (what, door) in [
        ("connect and close without a byte", Door::Frames),
        ("WebSocket upgrades closed without a message", Door::Ws),
    ] {
        let before = lines();
        let start = Instant::now();
        let done = flood(0, n, |i| async move {
            let from = Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8);
            open(door, from, addr, false).await.is_ok()
        })
        .await;
        let took = start.elapsed();
        // Let the server see every close before its log is read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let written = lines() - before;
        rows.push(row(
            format!("{n} connections: {what}"),
            format!(
                "{done} done in {:.1} s; {written} log lines (default RUST_LOG=info)",
                took.as_secs_f64()
            ),
            "< 100 log lines",
            done == n && written < 100,
        ));
    }
    let served = probe(Door::Frames, addr, Duration::from_secs(2))
        .await
        .is_some();
    srv.stop().await;
    if !served {
        rows.push(row(
            "  ordinary client after the empty connections",
            "NOT served".into(),
            "served",
            false,
        ));
    }
    Ok(rows)
}

/// The memory of an idle connection of each door, after one request:
/// 2,000 of them on a fresh `doors` server each (so no door reuses what
/// another freed), the server's RSS growth divided by their number; and
/// frames on the `echo_server` example too, a server without other doors.
pub(crate) async fn idle_memory(cx: &Cx) -> Result<Vec<Row>, String> {
    let n = cx.n(2000);
    let mut rows = Vec::new();
    for (door, bound, doors) in [
        (Door::Frames, Some(4u64 << 10), true),
        (Door::Frames, Some(4u64 << 10), false),
        (Door::Ws, Some(16 << 10), true),
        (Door::Http, None, true),
    ] {
        let name = format!("doors-idle-{door:?}");
        let srv = if doors {
            cx.own(&name, "doors", &[]).await?
        } else {
            cx.echo("echo-idle", &[]).await?
        };
        // What the first connection ever allocates (the registry, a
        // worker's buffers) is not any connection's.
        probe(door, srv.addr, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = proc::rss(srv.pid).map_err(|e| e.to_string())?;
        let _ = proc::reset_peak(srv.pid);
        let addr = srv.addr;
        let conns: Vec<TcpStream> = futures::stream::iter(0..n)
            .map(|i| {
                open(
                    door,
                    Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8),
                    addr,
                    true,
                )
            })
            .buffer_unordered(64)
            .filter_map(|r| async move { r.ok() })
            .collect()
            .await;
        // Past the door's detection wait (500 ms), so each is settled.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let grew = proc::rss(srv.pid).unwrap_or(0) as i64 - base as i64;
        let peak = peak_growth(srv.pid, base);
        let open = conns.len();
        drop(conns);
        srv.stop().await;
        let per = grew as f64 / open.max(1) as f64 / 1024.0;
        rows.push(row(
            format!(
                "{}: idle connection after one request{}",
                door.name(),
                if doors {
                    ""
                } else {
                    " (echo_server, no other door)"
                }
            ),
            format!(
                "{per:.1} KiB each ({open}/{n} open, RSS {:+.1} MiB, peak {:+.1} MiB)",
                grew as f64 / f64::from(1 << 20),
                peak as f64 / f64::from(1 << 20)
            ),
            &bound.map_or("no target (reported)".into(), |b| {
                format!("<= {} KiB each, all open", b >> 10)
            }),
            open == n && bound.is_none_or(|b| per * 1024.0 <= b as f64),
        ));
    }
    Ok(rows)
}
