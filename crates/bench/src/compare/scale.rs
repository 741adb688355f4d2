//! The `scale` section: one release `echo_server` holding 1,000, 10,000 and
//! 100,000 idle connections (`--quick`: the first two), its memory per
//! connection at each step, and an ordinary client pinging it throughout.
//!
//! ```text
//!   compare ──spawns──> echo_server --plain --max-connections N+64
//!      ├──spawns──> scale-hold  (stdin "open N" → stdout "held N")
//!      └── probe task: one connection from 127.0.0.1, a 16-byte frame
//!          every 2 ms, latency counted from when the ping was due
//! ```
//!
//! The probe's schedule is fixed (a Tokio interval that bursts to catch
//! up), and a ping's latency runs from its due time, not from when it was
//! sent: a server that stalls for 100 ms shows 50 late pings, not one
//! (no coordinated omission).

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{Instant, MissedTickBehavior};

use crate::child::Server;
use crate::error::{Error, Result};
use crate::payload::{check, Payloads};
use crate::procfs;

use super::bench::{Bench, Srv};
use super::report::loadavg;

/// How often the ordinary client pings.
const PROBE_EVERY: Duration = Duration::from_millis(2);

/// Most probe samples kept: 20 minutes of pings; later ones are not kept
/// (the section ends in about a minute).
const MAX_SAMPLES: usize = 600_000;

/// The targets at the largest step.
const TARGET_KIB: f64 = 4.0;
const TARGET_P99_MS: f64 = 50.0;

/// One step of the curve.
#[derive(Debug)]
struct Step {
    conns: usize,
    opened_secs: f64,
    rss_kib: u64,
    per_conn_kib: f64,
    /// Server CPU spent opening this step's connections, per connection.
    cpu_per_open_us: f64,
    holder_rss_kib: u64,
    opening: Latency,
    held: Latency,
    /// The control server's pings in the same windows.
    control_opening: Latency,
    control_held: Latency,
    load: String,
}

/// The ordinary client's pings in one window.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    pings: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// What the probe saw: each ping's due time and latency.
#[derive(Debug, Default)]
struct Pings {
    samples: Vec<(Instant, Duration)>,
    error: Option<String>,
}

impl Pings {
    fn window(&self, from: Instant, to: Instant) -> Latency {
        let mut v: Vec<f64> = self
            .samples
            .iter()
            .filter(|(due, _)| *due >= from && *due < to)
            .map(|(_, l)| l.as_secs_f64() * 1e3)
            .collect();
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Latency {
            pings: v.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: v[v.len() - 1],
        }
    }
}

/// The ordinary client: pings `addr` every [`PROBE_EVERY`] until aborted,
/// each echo checked byte for byte.
async fn probe(addr: std::net::SocketAddr, pings: Arc<Mutex<Pings>>) {
    let run = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let payloads = Payloads::new(16);
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut frame = [0u8; 20];
        let mut echo = [0u8; 20];
        for n in 0u64.. {
            let due = tick.tick().await;
            frame[..4].copy_from_slice(&16u32.to_be_bytes());
            frame[4..].copy_from_slice(payloads.get(n));
            stream.write_all(&frame).await?;
            stream.read_exact(&mut echo).await?;
            check(0, n, &echo, &frame)?;
            let latency = due.elapsed();
            let mut p = pings.lock().expect("not poisoned");
            if p.samples.len() < MAX_SAMPLES {
                p.samples.push((due, latency));
            }
        }
        Ok::<_, Error>(())
    };
    if let Err(e) = run.await {
        pings.lock().expect("not poisoned").error = Some(e.to_string());
    }
}

/// The steps of the curve: `1,000, 10,000[, 100,000]`, or up to `max`.
pub(super) fn steps(quick: bool, max: Option<usize>) -> Vec<usize> {
    let max = max.unwrap_or(if quick { 10_000 } else { 100_000 });
    let mut steps: Vec<usize> = [1_000, 10_000, 100_000]
        .into_iter()
        .filter(|&n| n < max)
        .collect();
    steps.push(max);
    steps
}

/// `compare --only scale`: the table, or why it failed.
pub(super) async fn scale(bench: &Bench, steps: &[usize]) -> String {
    let asked = steps.iter().copied().max().unwrap_or(0);
    match run(bench, steps).await {
        Ok(run) => table(&run, asked),
        Err(e) => format!("## Scale\n\nFAILED: {e}\n"),
    }
}

/// What a run measured.
#[derive(Debug)]
struct Run {
    steps: Vec<Step>,
    pings: Pings,
    whole: Latency,
    /// The control server's pings, and over the whole run.
    control: Pings,
    control_whole: Latency,
    /// The open-file limit in force, when it held the steps below what was
    /// asked.
    capped: Option<u64>,
}

/// Descriptors kept for everything but the held connections (listener,
/// logs, the runtime's own, the probe) in the server and the holder.
const SPARE_FILES: u64 = 256;

async fn run(bench: &Bench, asked: &[usize]) -> Result<Run> {
    let asked_max = asked.iter().copied().max().unwrap_or(0);
    // Both children inherit this; echo_server lifts its soft limit to it.
    let files = crate::scale::open_files(asked_max as u64 + SPARE_FILES);
    let allowed = usize::try_from(files.saturating_sub(SPARE_FILES)).unwrap_or(usize::MAX);
    if allowed < 1_000.min(asked_max) {
        return Err(Error::harness(format!(
            "the open-file limit is {files}: too low for this section"
        )));
    }
    let mut steps: Vec<usize> = asked.iter().copied().filter(|&n| n < allowed).collect();
    if asked_max >= allowed {
        steps.push(allowed);
    }
    let max = steps.iter().copied().max().unwrap_or(0);
    eprintln!("scale: echo_server holding up to {max} idle connections");
    let spec = bench.server_spec(Srv::Plain, Some(max + 64));
    let server = Server::start(&spec, &bench.logs).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = procfs::memory(server.pid)?.rss;

    let log = std::fs::File::create(bench.logs.join("scale-hold.log"))?;
    let mut holder = Command::new(&bench.exe)
        .args(["scale-hold", "--addr", &server.addr.to_string()])
        .args(["--max", &max.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let holder_pid = holder.id().unwrap_or(0);
    let mut orders = holder.stdin.take().expect("stdin is piped");
    let mut held = BufReader::new(holder.stdout.take().expect("stdout is piped")).lines();

    // The control: the floor echo server, holding nothing, pinged the same
    // way at the same time. On a machine shared with other work, what both
    // see is the machine's; what only echo_server sees is the connections'.
    let control = Server::start(&bench.server_spec(Srv::Floor, None), &bench.logs).await?;
    let pings = Arc::new(Mutex::new(Pings::default()));
    let control_pings = Arc::new(Mutex::new(Pings::default()));
    let prober = tokio::spawn(probe(server.addr, pings.clone()));
    let control_prober = tokio::spawn(probe(control.addr, control_pings.clone()));
    let started = Instant::now();
    let window = Duration::from_secs_f64(if bench.quick { 1.0 } else { 2.0 });
    tokio::time::sleep(window).await;

    let mut rows = Vec::new();
    for &n in &steps {
        let cpu_before = procfs::cpu_secs(server.pid)?;
        let before = rows.last().map_or(0, |r: &Step| r.conns);
        let opening = Instant::now();
        orders.write_all(format!("open {n}\n").as_bytes()).await?;
        let limit = Duration::from_secs(30 + n as u64 / 500);
        let line = tokio::time::timeout(limit, held.next_line())
            .await
            .map_err(|_| Error::harness(format!("{n} connections not open within {limit:?}")))??;
        if line.as_deref() != Some(&format!("held {n}")) {
            return Err(Error::harness(format!(
                "scale-hold failed at {n} (said {line:?}; see scale-hold.log)"
            )));
        }
        let opened = Instant::now();
        let cpu = procfs::cpu_secs(server.pid)? - cpu_before;
        eprintln!(
            "  {n} held, opened in {:.1} s",
            (opened - opening).as_secs_f64()
        );
        // Let the last echoes finish, then hold still for a window.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = procfs::memory(server.pid)?.rss;
        let holder_rss = procfs::memory(holder_pid).map_or(0, |m| m.rss);
        let quiet = Instant::now();
        tokio::time::sleep(window).await;
        let p = pings.lock().expect("not poisoned");
        let c = control_pings.lock().expect("not poisoned");
        if let Some(e) = p.error.as_ref().or(c.error.as_ref()) {
            return Err(Error::harness(format!("the ordinary client failed: {e}")));
        }
        let now = Instant::now();
        rows.push(Step {
            conns: n,
            opened_secs: (opened - opening).as_secs_f64(),
            rss_kib: rss,
            per_conn_kib: rss.saturating_sub(base) as f64 / n as f64,
            cpu_per_open_us: cpu * 1e6 / (n - before).max(1) as f64,
            holder_rss_kib: holder_rss,
            opening: p.window(opening, opened),
            held: p.window(quiet, now),
            control_opening: c.window(opening, opened),
            control_held: c.window(quiet, now),
            load: loadavg(),
        });
    }
    let end = Instant::now();
    // Closing stdin ends the holder, which drops every connection at once.
    drop(orders);
    if tokio::time::timeout(Duration::from_secs(30), holder.wait())
        .await
        .is_err()
    {
        let _ = holder.kill().await;
    }
    prober.abort();
    control_prober.abort();
    server.stop().await;
    control.stop().await;
    let pings = std::mem::take(&mut *pings.lock().expect("not poisoned"));
    let control = std::mem::take(&mut *control_pings.lock().expect("not poisoned"));
    let whole = pings.window(started, end);
    let control_whole = control.window(started, end);
    Ok(Run {
        steps: rows,
        pings,
        whole,
        control,
        control_whole,
        capped: (asked_max > max).then_some(files),
    })
}

fn table(run: &Run, asked: usize) -> String {
    let rows = &run.steps;
    let max = rows.last().map_or(0, |r| r.conns);
    let mut t = format!(
        "## Scale: idle connections on one echo_server\n\n\
         Release `echo_server --plain --max-connections {}`; one holder process (2 Tokio \
         workers) opens the connections 64 at a time, each bound to its own source address in \
         127.1.0.0/16 (500 a source), echoes one 16-byte frame on each and leaves them silent. \
         Per connection = (server RSS at the step − RSS before any) / connections; marginal = \
         RSS growth since the step before / connections added. An ordinary client on 127.0.0.1 \
         pings a 16-byte frame every 2 ms throughout, latency counted from when each ping was \
         due; a second one pings a control server the same way at the same time (the floor \
         echo, holding no connections), so that what both see is the machine's load. Targets at {asked}: ≤ {TARGET_KIB} KiB a connection, ordinary client p99 < \
         {TARGET_P99_MS} ms.\n\n\
         | connections | opened in | server RSS | per connection | marginal | server CPU per connection opened | p99 while opening (max) | p99 held (max) | control p99 opening / held | holder RSS | load average |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        max + 64
    );
    let mut prev = (0usize, None::<u64>);
    for r in rows {
        let marginal = prev.1.map_or_else(
            || "–".to_owned(),
            |rss| {
                let added = r.conns.saturating_sub(prev.0).max(1);
                format!(
                    "{:.2} KiB",
                    r.rss_kib.saturating_sub(rss) as f64 / added as f64
                )
            },
        );
        prev = (r.conns, Some(r.rss_kib));
        let _ = writeln!(
            t,
            "| {} | {:.1} s | {:.1} MiB | **{:.2} KiB** | {marginal} | {:.1} µs | {} | **{}** | {} / {} | {:.0} MiB | {} |",
            r.conns,
            r.opened_secs,
            r.rss_kib as f64 / 1024.0,
            r.per_conn_kib,
            r.cpu_per_open_us,
            ms(r.opening),
            ms(r.held),
            p99(r.control_opening),
            p99(r.control_held),
            r.holder_rss_kib as f64 / 1024.0,
            r.load,
        );
    }
    if let Some(files) = run.capped {
        let _ = writeln!(
            t,
            "\n{asked} connections asked; the open-file limit ({files}, which this process \
             could not raise: raising a hard limit needs root with `CAP_SYS_RESOURCE`) held the \
             largest step to {max}."
        );
    }
    if let Some(last) = rows.last() {
        // "Served throughout": the whole run's p99 is the one held to the
        // target, every step and every ramp included.
        let whole = run.whole;
        let _ = writeln!(
            t,
            "\nAt {}: {:.2} KiB a connection ({}). The ordinary client over the whole run: {} \
             pings, p50 {:.2} ms, p99 {:.2} ms ({}), max {:.1} ms; the control's p99 {:.2} ms, \
             max {:.1} ms.",
            last.conns,
            last.per_conn_kib,
            if last.per_conn_kib <= TARGET_KIB {
                "≤ 4 KiB"
            } else {
                "over 4 KiB"
            },
            whole.pings,
            whole.p50_ms,
            whole.p99_ms,
            if whole.p99_ms < TARGET_P99_MS {
                "< 50 ms"
            } else {
                "over 50 ms"
            },
            whole.max_ms,
            run.control_whole.p99_ms,
            run.control_whole.max_ms,
        );
    }
    if let Some(e) = run.pings.error.as_ref().or(run.control.error.as_ref()) {
        let _ = writeln!(t, "- FAILED, the ordinary client: {e}");
    }
    t
}

fn p99(l: Latency) -> String {
    if l.pings == 0 {
        return "–".into();
    }
    format!("{:.2} ms", l.p99_ms)
}

fn ms(l: Latency) -> String {
    if l.pings == 0 {
        return "–".into();
    }
    format!("{:.2} ms ({:.1})", l.p99_ms, l.max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_stop_at_the_largest_asked() {
        assert_eq!(steps(true, None), [1_000, 10_000]);
        assert_eq!(steps(false, None), [1_000, 10_000, 100_000]);
        assert_eq!(steps(false, Some(50_000)), [1_000, 10_000, 50_000]);
        assert_eq!(steps(true, Some(500)), [500]);
    }

    #[test]
    fn latency_windows_count_only_their_pings() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let pings = Pings {
            samples: (0..200)
                .map(|i| (at(i), Duration::from_millis(if i == 150 { 90 } else { 1 })))
                .collect(),
            error: None,
        };
        let early = pings.window(at(0), at(100));
        assert_eq!(early.pings, 100);
        assert_eq!(early.max_ms, 1.0);
        let late = pings.window(at(100), at(200));
        assert_eq!((late.pings, late.max_ms), (100, 90.0));
        assert_eq!(pings.window(at(300), at(400)).pings, 0);
    }
}
