//! Slowloris: attackers in their own process, the ordinary client timed
//! while they hold their connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::child::Server;
use crate::doors::{self, Door};
use crate::kit::*;
use crate::proc::{self, mib};

/// request and waits for its reply. Returns the whole time taken, or
/// `None` if it was not served within `limit`.
pub(crate) async fn probe(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    doors::probe(Door::Frames, addr, limit).await
}
/// The attack of the slowloris checks, run by `enchufe-reliability attack`
/// in its own (niced) process: `slow` connections of `door` from
/// 127.0.0.2 that start a unit (a frame announcing 8 MiB, a request head, a
/// WebSocket message) and send a byte a second, `idle` ones from 127.0.0.3
/// that send nothing more once open; each reconnects when the server cuts
/// it. Prints `open N` every 100 ms, until killed.
pub(crate) async fn attack(addr: SocketAddr, door: Door, slow: usize, idle: usize) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut attack = JoinSet::new();
    for i in 0..slow + idle {
        let slow = i < slow;
        let open = open.clone();
        let from = Ipv4Addr::new(127, 0, 0, if slow { 2 } else { 3 });
        attack.spawn(async move {
            loop {
                if doors::attacker(door, from, addr, slow, &open)
                    .await
                    .is_none()
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    loop {
        println!("open {}", open.load(Ordering::Relaxed));
        let _ = std::io::Write::flush(&mut std::io::stdout());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ordinary client every 50 ms for `window`: the times of those
/// served, and how many probes there were.
pub(crate) async fn probe_for(
    door: Door,
    addr: SocketAddr,
    window: Duration,
) -> (Vec<Duration>, usize) {
    let probes = probe_every(
        door,
        addr,
        window,
        Duration::from_millis(50),
        Duration::from_secs(5),
    )
    .await;
    let n = probes.len().max(1);
    (probes.into_iter().filter_map(|(_, t)| t).collect(), n)
}

/// The ordinary client every `every` for `window`, each probe given
/// `limit`, on a thread and runtime of its own so that its timing does not
/// queue behind the suite's tasks (attackers in the suite's own process
/// would otherwise decide it). Each probe's start (from the first) and its
/// time, `None` if it was not served within `limit`.
pub(crate) async fn probe_every(
    door: Door,
    addr: SocketAddr,
    window: Duration,
    every: Duration,
    limit: Duration,
) -> Vec<(Duration, Option<Duration>)> {
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the probe");
        rt.block_on(async move {
            let mut probes = Vec::new();
            let start = Instant::now();
            while start.elapsed() < window {
                let next = Instant::now() + every;
                let at = start.elapsed();
                probes.push((at, doors::probe(door, addr, limit).await));
                tokio::time::sleep_until(next.into()).await;
            }
            probes
        })
    };
    tokio::task::spawn_blocking(run).await.unwrap_or_default()
}

/// 1,000 slowloris and 5,000 idle connections, reconnecting when cut, while
/// an ordinary client connects and makes a request every 50 ms.
pub(crate) async fn slowloris(cx: &Cx) -> Result<Vec<Row>, String> {
    let (nslow, nidle) = (cx.n(1000), cx.n(5000));
    let srv = cx.echo("slowloris", &[]).await?;
    let rows = under_attack(&srv, Door::Frames, nslow, nidle, "").await;
    srv.stop().await;
    rows
}

/// `nslow` slowloris and `nidle` idle connections of `door` against `srv`,
/// reconnecting when cut, while the door's ordinary client connects and
/// makes a request every 50 ms for 15 s (and `curl`, for HTTP, every
/// 500 ms). `label` starts the rows' names.
pub(crate) async fn under_attack(
    srv: &Server,
    door: Door,
    nslow: usize,
    nidle: usize,
    label: &str,
) -> Result<Vec<Row>, String> {
    let addr = srv.addr;
    // The attackers in their own process at the lowest CPU priority: on
    // one 2-core machine they would otherwise take the server's CPU, which
    // attackers on other machines do not.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let door_arg = format!("{door:?}").to_lowercase();
    let mut child = tokio::process::Command::new("nice")
        .args(["-n", "19"])
        .arg(exe)
        .args(["attack", "--addr", &addr.to_string(), "--door", &door_arg])
        .args(["--slow", &nslow.to_string(), "--idle", &nidle.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the attack: {e}"))?;
    let open = Arc::new(AtomicUsize::new(0));
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let counter = open.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(n) = line.strip_prefix("open ").and_then(|n| n.parse().ok()) {
                counter.store(n, Ordering::Relaxed);
            }
        }
    });
    // Let the attack take its places (as many as the server lets it).
    let ramp = Instant::now();
    while open.load(Ordering::Relaxed) < nslow + nidle && ramp.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = open.load(Ordering::Relaxed);
    let ramp = ramp.elapsed();
    // Probes for 15 s: past the 10 s first-frame and head deadlines, so
    // the attackers are cut and reconnect during the measurement.
    let window = Duration::from_secs(15);
    let curl = async {
        match door {
            Door::Http => doors::curl_for(addr, window).await,
            _ => None,
        }
    };
    let ((mut samples, probes), curl) = tokio::join!(probe_for(door, addr, window), curl);
    let during = open.load(Ordering::Relaxed);
    let rss = proc::rss(srv.pid).unwrap_or(0);
    let _ = child.start_kill();
    let _ = child.wait().await;
    let (served, p50, p99, max) = latencies(&mut samples);
    let sep = if label.is_empty() { "" } else { ": " };
    let mut rows = vec![row(
        format!("{label}{sep}{nslow} slowloris + {nidle} idle, ordinary client"),
        format!(
            "served {served}/{probes}, p50 {}, p99 {}, max {}; attack sockets open {opened} after {:.1} s, {during} at the end; server RSS {}",
            ms(p50),
            ms(p99),
            ms(max),
            ramp.as_secs_f64(),
            mib(rss as i64)
        ),
        "served every time, p99 < 50 ms",
        served == probes && p99 < Duration::from_millis(50),
    )];
    match (door, curl) {
        (Door::Http, Some((mut times, tries))) => {
            let (served, p50, p99, max) = latencies(&mut times);
            rows.push(row(
                "  curl meanwhile (its time_total)",
                format!(
                    "served {served}/{tries}, p50 {}, p99 {}, max {}",
                    ms(p50),
                    ms(p99),
                    ms(max)
                ),
                "served every time, p99 < 50 ms",
                served == tries && p99 < Duration::from_millis(50),
            ));
        }
        (Door::Http, None) => rows.push(row(
            "  curl meanwhile",
            "curl is not installed: not run".into(),
            "served every time, p99 < 50 ms",
            true,
        )),
        _ => {}
    }
    Ok(rows)
}
