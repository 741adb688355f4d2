//! The checks: each attacks a real server over loopback and returns its
//! figures, each beside its bound.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use enchufe::client::{Backoff, Config as ClientConfig, Reconnect, WhileDown};
use enchufe::{Client, Json, Profile};
use futures::StreamExt;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::child::{Server, Spec};
use crate::doors::{self, Door};
use crate::proc::{self, mib};

/// One line of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) check: String,
    pub(crate) figure: String,
    pub(crate) bound: String,
    pub(crate) ok: bool,
    /// Of a check in `TARGETS` (main.rs): reported, not gating.
    pub(crate) target: bool,
}

pub(crate) fn row(check: impl Into<String>, figure: String, bound: &str, ok: bool) -> Row {
    Row {
        check: check.into(),
        figure,
        bound: bound.to_string(),
        ok,
        target: false,
    }
}

/// What every check needs.
#[derive(Debug)]
pub(crate) struct Cx {
    /// The `echo_server` example binary.
    pub(crate) echo: PathBuf,
    /// Where server logs go.
    pub(crate) logs: PathBuf,
    /// Multiplier on connection counts (1.0: the headline figures).
    pub(crate) scale: f64,
}

impl Cx {
    pub(crate) fn n(&self, full: usize) -> usize {
        ((full as f64 * self.scale).round() as usize).max(1)
    }

    pub(crate) async fn echo(&self, name: &str, extra: &[&str]) -> Result<Server, String> {
        let spec = Spec::echo(&self.echo, extra);
        Server::start(&spec, "127.0.0.1:0", self.logs.join(format!("{name}.log"))).await
    }

    pub(crate) async fn own(
        &self,
        name: &str,
        kind: &str,
        extra: &[&str],
    ) -> Result<Server, String> {
        let spec = Spec::own(kind, extra);
        Server::start(&spec, "127.0.0.1:0", self.logs.join(format!("{name}.log"))).await
    }
}

/// The server's frame limit and per-connection output budget, defaults of
/// `server::Config`: the byte budget memory checks are held to.
pub(crate) const FRAME: u64 = 8 << 20;
pub(crate) const QUEUED: u64 = 4 << 20;

pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A TCP connection to `addr` from the loopback address `from`, so that
/// attackers and the ordinary client (127.0.0.1) are told apart.
pub(crate) async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(addr).await
}

/// Reads (and discards) until the other end closes; `Err` on timeout.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Result<(), ()> {
    let mut buf = vec![0; 64 << 10];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| ())
}

/// The ordinary client of frames: connects from 127.0.0.1, sends one
/// request and waits for its reply. Returns the whole time taken, or
/// `None` if it was not served within `limit`.
async fn probe(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    doors::probe(Door::Frames, addr, limit).await
}

/// A client of `config` connected to `addr`; failing to connect fails the
/// check.
async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client, String> {
    Client::connect_with(addr, config)
        .await
        .map_err(|e| e.to_string())
}

/// The profile a check's server runs with `--mux` (or without).
fn profile(mux: bool) -> Profile {
    if mux {
        Profile::Multiplexed
    } else {
        Profile::Plain
    }
}

/// The `p`th percentile (0..=100) of `samples`, nearest rank.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Peak RSS growth of `pid` over `base` since the last reset.
pub(crate) fn peak_growth(pid: u32, base: u64) -> i64 {
    proc::peak_rss(pid).unwrap_or(0) as i64 - base as i64
}

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
const PARTIAL_BUDGET: u64 = 256 << 20;
const UNCHARGED: u64 = 128 << 10;

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
    // deadline of 30 s, which would cut the attackers).
    let start = Instant::now();
    let (mut served, mut probes, mut missed) = (0, 0, Vec::new());
    while start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        probes += 1;
        let at = start.elapsed();
        match probe(addr, Duration::from_secs(2)).await {
            Some(_) => served += 1,
            None => missed.push(format!("{:.1} s", at.as_secs_f64())),
        }
    }
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

/// The ordinary client every 50 ms for `window`, on a thread and runtime of
/// its own so that its timing does not queue behind the suite's tasks.
async fn probe_for(door: Door, addr: SocketAddr, window: Duration) -> (Vec<Duration>, usize) {
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the probe");
        rt.block_on(async move {
            let mut samples = Vec::new();
            let mut probes = 0;
            let start = Instant::now();
            while start.elapsed() < window {
                let next = Instant::now() + Duration::from_millis(50);
                probes += 1;
                if let Some(t) = doors::probe(door, addr, Duration::from_secs(5)).await {
                    samples.push(t);
                }
                tokio::time::sleep_until(next.into()).await;
            }
            (samples, probes)
        })
    };
    tokio::task::spawn_blocking(run)
        .await
        .unwrap_or((Vec::new(), 1))
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

/// How many `samples`, and their p50, p99 and maximum.
fn latencies(samples: &mut [Duration]) -> (usize, Duration, Duration, Duration) {
    let p50 = percentile(samples, 50.0);
    let p99 = percentile(samples, 99.0);
    let max = samples.last().copied().unwrap_or_default();
    (samples.len(), p50, p99, max)
}

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

/// A client killed with SIGKILL in the middle of a request: how soon the
/// server gives its slot back.
pub(crate) async fn kill_client(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (what, half) in [
        ("half a frame sent", true),
        ("request sent, handler running", false),
    ] {
        let srv = if half {
            cx.echo("kill-client", &[]).await?
        } else {
            cx.own("kill-client-slow", "slow", &["--delay-ms", "3000"])
                .await?
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = proc::fds(srv.pid).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("hold").arg("--addr").arg(srv.addr.to_string());
        if half {
            cmd.arg("--half");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut out = child.stdout.take().ok_or("no stdout")?;
        let mut ready = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(10), out.read_exact(&mut ready))
            .await
            .map_err(|_| "the client never got ready")?
            .map_err(|e| e.to_string())?;
        proc::wait_fds(srv.pid, Duration::from_secs(5), |n| n > base).await;
        // Let the server read what was sent (and start the handler).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        let freed = proc::wait_fds(srv.pid, Duration::from_secs(10), |n| n <= base).await;
        srv.stop().await;
        // A killed client's FIN looks like a half-close (a client may send
        // its request, shut its side and wait for the reply), so a plain
        // server notices the kill when its reply hits the dead socket: the
        // bound counts from the end of the handler (3 s) there.
        let (limit, bound) = if half {
            (Duration::from_secs(1), "freed < 1 s")
        } else {
            (
                Duration::from_secs(4),
                "freed < 1 s after the 3 s handler ends",
            )
        };
        rows.push(row(
            format!("kill -9 of a client, {what}"),
            format!(
                "slot freed {}",
                freed.map_or("not within 10 s".into(), |d| format!("in {}", ms(d)))
            ),
            bound,
            freed.is_some_and(|d| d < limit),
        ));
    }
    Ok(rows)
}

/// The short name of an error variant, from its `Debug`; for a
/// multiplexed error reply, with its code (`Remote ShuttingDown`).
fn variant(e: &impl std::fmt::Debug) -> String {
    let text = format!("{e:?}");
    let name = text.split(['(', ' ', '{']).next().unwrap_or("");
    match text.split_once("code: ") {
        Some((_, rest)) if name == "Remote" => {
            let code = rest.split([',', ' ', '}', '(']).next().unwrap_or("");
            format!("Remote {code}")
        }
        _ => name.to_string(),
    }
}

/// The server killed with SIGKILL under a connected client: a typed error,
/// then the same client served again once the server is back.
pub(crate) async fn kill_server(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut srv = cx.echo("kill-server", &[]).await?;
    let addr = srv.addr;
    let config = ClientConfig::default().reconnect(
        Reconnect::default()
            .backoff(
                Backoff::default()
                    .max_delay(Duration::from_millis(200))
                    .forever(),
            )
            .while_down(WhileDown::FailFast),
    );
    let client = connect(addr, config).await?;
    let _: Bytes = client
        .request(Bytes::from_static(b"before"))
        .await
        .map_err(|e| e.to_string())?;
    srv.signal(Signal::SIGKILL);
    srv.wait_exit(Duration::from_secs(5)).await;
    let start = Instant::now();
    let failed = tokio::time::timeout(
        Duration::from_secs(5),
        client.request::<_, Bytes>(Bytes::from_static(b"during")),
    )
    .await;
    let (error_ok, error) = match failed {
        Ok(Err(e)) => (!e.is_timeout(), variant(&e)),
        Ok(Ok(_)) => (false, "answered by a dead server?".into()),
        Err(_) => (false, "no answer within 5 s (silent)".into()),
    };
    let took = start.elapsed();
    let back = Server::start(
        &Spec::echo(&cx.echo, &[]),
        &addr.to_string(),
        cx.logs.join("kill-server-2.log"),
    )
    .await?;
    let start = Instant::now();
    let mut again = None;
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(reply) = client
            .request::<_, Bytes>(Bytes::from_static(b"after"))
            .await
        {
            if reply.as_ref() == b"after" {
                again = Some(start.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    back.stop().await;
    Ok(vec![row(
        "kill -9 of the server",
        format!(
            "request failed with {error} in {}; same client served again {} after restart",
            ms(took),
            again.map_or("never (10 s)".into(), ms)
        ),
        "typed error < 1 s, reconnected < 5 s",
        error_ok
            && took < Duration::from_secs(1)
            && again.is_some_and(|d| d < Duration::from_secs(5)),
    )])
}

/// SIGTERM with 100 requests in flight (handlers take 500 ms).
pub(crate) async fn shutdown(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for mux in [false, true] {
        let n = 100;
        let mut extra = vec!["--delay-ms", "500"];
        if mux {
            extra.push("--mux");
        }
        let name = if mux {
            "shutdown-mux"
        } else {
            "shutdown-plain"
        };
        let mut srv = cx.own(name, "slow", &extra).await?;
        let profile = profile(mux);
        let config = ClientConfig::default()
            .profile(profile)
            .request_timeout(Duration::from_secs(20));
        let mut clients = Vec::new();
        for _ in 0..if mux { 1 } else { n } {
            clients.push(connect(srv.addr, config.clone()).await?);
        }
        let mut calls = JoinSet::new();
        for i in 0..n {
            let client = clients[i % clients.len()].clone();
            calls.spawn(async move {
                client
                    .request::<_, Bytes>(Bytes::from(format!("{i}")))
                    .await
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        srv.signal(Signal::SIGTERM);
        let (mut answered, mut typed, mut silent) = (0, 0, 0);
        let mut kinds = std::collections::BTreeSet::new();
        while let Some(done) = calls.join_next().await {
            match done {
                Ok(Ok(_)) => answered += 1,
                Ok(Err(e)) if !e.is_timeout() => {
                    typed += 1;
                    kinds.insert(variant(&e));
                }
                _ => silent += 1,
            }
        }
        let exited = srv.wait_exit(Duration::from_secs(15)).await;
        let took = start.elapsed();
        rows.push(row(
            format!("shutdown, {n} in flight, {profile:?}"),
            format!(
                "{answered} answered, {typed} typed errors{}, {silent} silent; exited {}",
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.into_iter().collect::<Vec<_>>().join(", "))
                },
                if exited {
                    format!("in {:.1} s", took.as_secs_f64())
                } else {
                    "NOT within 15 s".into()
                }
            ),
            "answered + typed = 100, 0 silent, exits",
            answered + typed == n && silent == 0 && exited,
        ));
    }
    Ok(rows)
}

/// The client for one request of [`panics`]: the `shared` one if there is
/// one (multiplexed: a panic costs its request, not the connection), else
/// a new connection (plain: the panic ended the last one).
async fn attempt(
    shared: Option<&Client>,
    addr: SocketAddr,
    config: &ClientConfig,
) -> Result<Client, String> {
    match shared {
        Some(client) => Ok(client.clone()),
        None => connect(addr, config.clone()).await,
    }
}

/// A handler that panics, 100 times, in both profiles.
pub(crate) async fn panics(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for mux in [false, true] {
        let n = 100;
        let extra: &[&str] = if mux { &["--mux"] } else { &[] };
        let srv = cx
            .own(
                if mux { "panic-mux" } else { "panic-plain" },
                "panic",
                extra,
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = proc::fds(srv.pid).map_err(|e| e.to_string())?;
        let profile = profile(mux);
        let config = ClientConfig::default()
            .profile(profile)
            .request_timeout(Duration::from_secs(5));
        let (mut typed, mut served) = (0, 0);
        let mut kinds = std::collections::BTreeSet::new();
        let shared = if mux {
            Some(connect(srv.addr, config.clone()).await?)
        } else {
            None
        };
        for _ in 0..n {
            let client = attempt(shared.as_ref(), srv.addr, &config).await?;
            match client
                .request::<_, Bytes>(Bytes::from_static(b"panic"))
                .await
            {
                Err(e) if !e.is_timeout() => {
                    typed += 1;
                    kinds.insert(variant(&e));
                }
                _ => {}
            }
            let next = attempt(shared.as_ref(), srv.addr, &config).await?;
            if next
                .request::<_, Bytes>(Bytes::from_static(b"ok"))
                .await
                .is_ok()
            {
                served += 1;
            }
        }
        drop(shared);
        let flat = proc::wait_fds(srv.pid, Duration::from_secs(5), |f| f <= base)
            .await
            .is_some();
        srv.stop().await;
        rows.push(row(
            format!("panicking handler x{n}, {profile:?}"),
            format!(
                "{typed}/{n} typed errors ({}), next request served {served}/{n}, descriptors {}",
                kinds.into_iter().collect::<Vec<_>>().join(", "),
                if flat { "back to start" } else { "NOT back" }
            ),
            "every panic a typed error, server goes on",
            typed == n && served == n && flat,
        ));
    }
    Ok(rows)
}

/// JSON nested 10,000 deep, to a `Json<serde_json::Value>` handler (both
/// profiles) and back to a client decoding `Json<Value>`.
pub(crate) async fn deep_json(cx: &Cx) -> Result<Vec<Row>, String> {
    let depth = 10_000;
    let nested = Bytes::from(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    let mut figures = Vec::new();
    let mut ok = true;
    for mux in [false, true] {
        let extra: &[&str] = if mux { &["--mux"] } else { &[] };
        let srv = cx
            .own(if mux { "json-mux" } else { "json-plain" }, "json", extra)
            .await?;
        let profile = profile(mux);
        let config = ClientConfig::default()
            .profile(profile)
            .request_timeout(Duration::from_secs(5));
        let client = connect(srv.addr, config.clone()).await?;
        let got = client.request::<_, Bytes>(nested.clone()).await;
        let after = connect(srv.addr, config)
            .await?
            .request::<_, Json<serde_json::Value>>(Json(serde_json::json!([1, [2]])))
            .await;
        let typed = matches!(&got, Err(e) if !e.is_timeout());
        ok &= typed && after.is_ok();
        figures.push(format!(
            "server {profile:?}: {}, next served: {}",
            got.err().map_or("answered?!".into(), |e| variant(&e)),
            after.is_ok()
        ));
        srv.stop().await;
    }
    // The client decoding it: the echo server hands the bytes back.
    let srv = cx.echo("json-client", &[]).await?;
    let client = Client::connect(srv.addr).await.map_err(|e| e.to_string())?;
    let got = client.request::<_, Json<serde_json::Value>>(nested).await;
    let typed = matches!(&got, Err(e) if !e.is_timeout());
    ok &= typed;
    figures.push(format!(
        "client: {}",
        got.err().map_or("decoded?!".into(), |e| variant(&e))
    ));
    srv.stop().await;
    Ok(vec![row(
        format!("serde_json nested {depth} deep"),
        figures.join("; "),
        "typed errors, no stack overflow, server goes on",
        ok,
    )])
}

/// What the malformed connections send, in turn.
fn malformed(i: usize) -> (Vec<u8>, bool) {
    match i % 5 {
        0 => (b"GET / HTTP/1.1\r\nHost: enchufe\r\n\r\n".to_vec(), false),
        // The start of a TLS ClientHello.
        1 => (
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
            false,
        ),
        2 => (u32::MAX.to_be_bytes().to_vec(), false),
        // Half a frame, then the client closes: EOF inside a frame.
        3 => {
            let mut half = 1000u32.to_be_bytes().to_vec();
            half.extend_from_slice(&[9; 100]);
            (half, true)
        }
        // Bytes from a cheap generator, then the client closes.
        _ => {
            let mut x = i as u64 | 1;
            let bytes = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (bytes, true)
        }
    }
}

async fn send_malformed(addr: SocketAddr, from: usize, to: usize) -> usize {
    flood(from, to, |i| async move {
        let Ok(mut stream) = connect_from(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8), addr).await
        else {
            return false;
        };
        let (bytes, then_close) = malformed(i);
        if stream.write_all(&bytes).await.is_err() {
            return true;
        }
        if !then_close {
            let _ = until_closed(&mut stream, Duration::from_secs(15)).await;
        }
        true
    })
    .await
}

/// Runs `conn` for each of `from..to`, 64 at a time; how many returned
/// `true`.
pub(crate) async fn flood<F, Fut>(from: usize, to: usize, conn: F) -> usize
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    futures::stream::iter(from..to)
        .map(conn)
        .buffer_unordered(64)
        .fold(0, |a, ok| async move { a + usize::from(ok) })
        .await
}

/// 20,000 connections that send what is not frames.
pub(crate) async fn malformed_flood(cx: &Cx) -> Result<Vec<Row>, String> {
    let n = cx.n(20_000);
    let warm = (n / 20).max(1);
    let srv = cx.echo("malformed", &[]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base_fds = proc::fds(srv.pid).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut done = send_malformed(srv.addr, 0, warm).await;
    proc::wait_fds(srv.pid, Duration::from_secs(5), |f| f <= base_fds).await;
    let rss_warm = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let log_warm = std::fs::read_to_string(&srv.log).unwrap_or_default();
    done += send_malformed(srv.addr, warm, n).await;
    let took = start.elapsed();
    let settled = proc::wait_fds(srv.pid, Duration::from_secs(5), |f| f <= base_fds).await;
    let fds_end = proc::fds(srv.pid).unwrap_or(0);
    let rss_end = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let served = probe(srv.addr, Duration::from_secs(2)).await.is_some();
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    srv.stop().await;
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    let lines = log.lines().count();
    let per_conn = (log.len() - log_warm.len()) as f64 / (n - warm).max(1) as f64;
    let grew = rss_end as i64 - rss_warm as i64;
    // Warnings are thinned to the 1st, 2nd, 4th, 8th... bad connection.
    let warn_bound = 2 * (usize::BITS - n.leading_zeros()) as usize + 10;
    Ok(vec![
        row(
            format!("{n} malformed connections"),
            format!(
                "{done} sent in {:.1} s; RSS {:+} after the first {warm}; descriptors {base_fds} -> {fds_end}; next client {}",
                took.as_secs_f64(),
                mib(grew),
                if served { "served" } else { "NOT served" }
            ),
            "RSS < +4 MiB, descriptors back, served",
            done == n && grew < 4 << 20 && settled.is_some() && served,
        ),
        row(
            "  its log (default RUST_LOG=info)",
            format!("{warnings} warnings; {lines} lines in all, {per_conn:.0} bytes per connection"),
            &format!("<= {warn_bound} warnings (thinned), <= {} lines: none per connection", warn_bound + 10),
            warnings <= warn_bound && lines <= warn_bound + 10,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=200).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut samples, 50.0), Duration::from_millis(100));
        assert_eq!(percentile(&mut samples, 99.0), Duration::from_millis(198));
        assert_eq!(percentile(&mut samples, 100.0), Duration::from_millis(200));
        assert_eq!(percentile(&mut [], 99.0), Duration::ZERO);
    }

    #[test]
    fn variants_are_named_with_the_remote_code() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum E {
            Remote { code: ErrorCode, message: String },
            ClosedByPeer,
        }
        #[derive(Debug)]
        enum ErrorCode {
            ShuttingDown,
        }
        let remote = E::Remote {
            code: ErrorCode::ShuttingDown,
            message: "bye".into(),
        };
        assert_eq!(variant(&remote), "Remote ShuttingDown");
        assert_eq!(variant(&E::ClosedByPeer), "ClosedByPeer");
    }

    #[test]
    fn malformed_inputs_are_never_frames_the_server_could_serve() {
        for i in 0..10 {
            let (bytes, _) = malformed(i);
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert!(len > bytes.len() - 4, "input {i} holds a whole frame");
        }
    }
}
