//! What `compare` prints: the header describing the machine and method,
//! and one markdown table per section.

use std::fmt::Write as _;

use tokio::process::Command;

use super::duel::{Duel, Sample, Spread, Who};
use super::memory::{AbuseRow, IdleRow};
use super::units::{micros, rate};

pub(super) async fn print_header(rounds: usize, secs: f64) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc = Command::new(rustc)
        .arg("-V")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "rustc unknown".into());
    println!("# enchufe comparison harness\n");
    println!("- command: `enchufe-bench {}`", args.join(" "));
    println!(
        "- machine: {cpus} CPUs ({model}), Linux {}, {rustc}; load average at start {}",
        kernel.trim(),
        loadavg()
    );
    println!(
        "- method: separate processes over 127.0.0.1; rounds per duel: {rounds}, {secs} s per run, \
         contenders back to back in rotating order; figures are medians over rounds, \
         ratios the median of per-round ratios with (min–max)"
    );
    println!(
        "- servers: floor = hand-written tokio-util `Framed` echo (crates/bench); \
         enchufe = `examples/echo_server` (HTTP: `examples/http_hello`) in release, `RUST_LOG=warn`; \
         tarpc 0.38, bincode over TCP; hyper 1.x HTTP/1.1; \
         all on Tokio's multi-thread runtime with default workers\n"
    );
}

pub(super) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn kib(k: u64) -> String {
    if k >= 10 * 1024 {
        format!("{:.0} MiB", k as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", k as f64 / 1024.0)
    }
}

fn bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "failed".into(), f)
}

/// `0.91 (0.85–0.97)`, or why there is none.
pub(super) fn ratio(s: Option<Spread>) -> String {
    s.map_or_else(
        || "failed".into(),
        |s| format!("**{:.2}** ({:.2}–{:.2})", s.median, s.min, s.max),
    )
}

/// Whether the median meets a target: `higher` is better, or lower.
pub(super) fn meets(s: Option<Spread>, target: f64, higher: bool) -> &'static str {
    match s {
        Some(s) if (higher && s.median >= target) || (!higher && s.median <= target) => "yes",
        Some(_) => "no",
        None => "–",
    }
}

/// `theirs | ours`: the medians of `f`, each shown with `show`.
fn medians(
    d: &Duel,
    [theirs, ours]: [Who; 2],
    f: fn(&Sample) -> f64,
    show: fn(f64) -> String,
) -> String {
    format!(
        "{} | {}",
        opt(d.median(theirs, f), show),
        opt(d.median(ours, f), show)
    )
}

/// The cells of a row of ours against theirs: throughput, ours / theirs,
/// whether that meets `target`; server CPU, theirs / ours (efficiency:
/// higher is better too), whether that meets `target`.
fn rate_and_cpu(d: &Duel, both: [Who; 2], target: f64) -> String {
    let [theirs, ours] = both;
    let thr = d.ratio(ours, theirs, |s| s.rate);
    let eff = d.ratio(theirs, ours, |s| s.server_cpu);
    format!(
        "{} | {} | {} | {} | {} | {}",
        medians(d, both, |s| s.rate, rate),
        ratio(thr),
        meets(thr, target, true),
        medians(d, both, |s| s.server_cpu, micros),
        ratio(eff),
        meets(eff, target, true),
    )
}

fn errors(duels: &[&Duel]) -> String {
    let mut out = String::new();
    for d in duels {
        for e in &d.errors {
            let _ = writeln!(out, "- FAILED, {}: {e}", d.workload.label());
        }
    }
    out
}

pub(super) fn plain_table(duels: &[Duel]) -> String {
    let mut t = String::from(
        "## Plain echo: enchufe echo_server vs the floor\n\n\
         The same hand-written pipelined generator drives both. Throughput is echoed frames \
         per second; CPU is the server process's user + system time over the run, per frame. \
         Targets: throughput ≥ 0.95× floor, CPU efficiency (floor CPU / enchufe CPU) ≥ 0.95.\n\n\
         | workload | floor | enchufe | enchufe / floor | ≥ 0.95 | floor CPU/frame | enchufe CPU/frame | floor / enchufe CPU | ≥ 0.95 |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut used = Vec::new();
    for d in duels.iter().filter(|d| d.index(Who::Floor).is_some()) {
        let cells = rate_and_cpu(d, [Who::Floor, Who::Enchufe], 0.95);
        let _ = writeln!(t, "| {} | {cells} |", d.workload.label());
        used.push(d);
    }
    t + &errors(&used)
}

pub(super) fn client_table(plain: &[Duel], mux: &[Duel]) -> String {
    let mut t = String::from(
        "## Pipelining: enchufe Client vs the hand-written generator\n\n\
         Each row against one enchufe echo_server (plain profile; multiplexed rows: `--mux`). \
         `Client::pipeline`: one task per connection, `depth` requests in flight, replies in \
         order. Request loops: one task per request in flight, each calling `request` in a loop \
         on clones of one `Client` per connection. The generator: one task per connection, \
         hand-written (tokio-util codec; multiplexed: hellos, then a header per frame). CPU is \
         the load process's, per frame. Target: `Client` ≥ 0.9× generator.\n\n\
         | workload | generator | pipeline | pipeline / generator | ≥ 0.9 | request loops | loops / generator | generator CPU/frame | pipeline CPU/frame | loops CPU/frame |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut used = Vec::new();
    let rows = plain
        .iter()
        .filter(|d| d.index(Who::Pipeline).is_some())
        .map(|d| (d, "", Who::Enchufe, Who::Pipeline, Who::Client))
        .chain(mux.iter().map(|d| {
            (
                d,
                ", multiplexed",
                Who::GeneratorMux,
                Who::PipelineMux,
                Who::EnchufeMux,
            )
        }));
    for (d, profile, generator, pipeline, loops) in rows {
        let r = d.ratio(pipeline, generator, |s| s.rate);
        let l = d.ratio(loops, generator, |s| s.rate);
        let cpu = |who| opt(d.median(who, |s| s.client_cpu), micros);
        let loops_rate = match d.index(loops) {
            Some(_) => opt(d.median(loops, |s| s.rate), rate),
            None => "–".into(),
        };
        let _ = writeln!(
            t,
            "| {}{profile} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.workload.label(),
            opt(d.median(generator, |s| s.rate), rate),
            opt(d.median(pipeline, |s| s.rate), rate),
            ratio(r),
            meets(r, 0.9, true),
            loops_rate,
            if d.index(loops).is_some() {
                ratio(l)
            } else {
                "–".into()
            },
            cpu(generator),
            cpu(pipeline),
            if d.index(loops).is_some() {
                cpu(loops)
            } else {
                "–".into()
            },
        );
        used.push(d);
    }
    t + &errors(&used)
}

pub(super) fn latency_table(d: &Duel) -> String {
    let r = d.ratio(Who::Enchufe, Who::Floor, |s| s.latency.p99);
    let mut t = String::from(
        "## Round-trip latency: enchufe echo_server vs the floor\n\n\
         The generator with one frame in flight per connection, every round trip timed. \
         Target: p99 ≤ 1.1× floor.\n\n\
         | workload | floor p50 | floor p99 | enchufe p50 | enchufe p99 | p99 enchufe / floor | ≤ 1.1 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let _ = writeln!(
        t,
        "| {} | {} | {} | {} | {} | {} | {} |",
        d.workload.label(),
        opt(d.median(Who::Floor, |s| s.latency.p50), micros),
        opt(d.median(Who::Floor, |s| s.latency.p99), micros),
        opt(d.median(Who::Enchufe, |s| s.latency.p50), micros),
        opt(d.median(Who::Enchufe, |s| s.latency.p99), micros),
        ratio(r),
        meets(r, 1.1, false),
    );
    t + &errors(&[d])
}

pub(super) fn mux_table(duels: &[Duel]) -> String {
    let mut t = String::from(
        "## Multiplexed: enchufe Client + echo_server --mux vs tarpc\n\n\
         enchufe's `Client` (multiplexed profile) against the echo_server example with `--mux`; \
         tarpc's client against a tarpc echo service. Both: one client per connection, one task \
         per request in flight; tarpc with `TCP_NODELAY` on both ends, and at 16 B 32 × 16 also with \
         its default transport (Nagle on, as its `tcp` helpers leave it). Target: enchufe ≥ 3× tarpc \
         at 16 B, 32 × 16, both ways.\n\n\
         | workload | tarpc | enchufe | enchufe / tarpc | ≥ 3 | tarpc server CPU/req | enchufe server CPU/req | tarpc client CPU/req | enchufe client CPU/req |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    // The target is judged at the first workload; tarpc as its users run
    // it too (its `tcp` helpers leave Nagle on), where measured.
    let rows = duels
        .iter()
        .enumerate()
        .map(|(i, d)| (d, Who::Tarpc, "", i == 0))
        .chain(
            duels
                .iter()
                .filter(|d| d.index(Who::TarpcNagle).is_some())
                .map(|d| {
                    (
                        d,
                        Who::TarpcNagle,
                        ", tarpc with Nagle on (its default)",
                        true,
                    )
                }),
        );
    for (d, tarpc, note, judged) in rows {
        let both = [tarpc, Who::EnchufeMux];
        let r = d.ratio(Who::EnchufeMux, tarpc, |s| s.rate);
        let _ = writeln!(
            t,
            "| {}{note} | {} | {} | {} | {} | {} |",
            d.workload.label(),
            medians(d, both, |s| s.rate, rate),
            ratio(r),
            if judged { meets(r, 3.0, true) } else { "" },
            medians(d, both, |s| s.server_cpu, micros),
            medians(d, both, |s| s.client_cpu, micros),
        );
    }
    t + &errors(&duels.iter().collect::<Vec<_>>())
}

pub(super) fn http_table(duels: &[Duel]) -> String {
    let mut t = String::from(
        "## HTTP/1.1: enchufe http_hello vs hyper\n\n\
         The harness's HTTP generator (keep-alive, `GET /hola/N`, every reply checked in order; \
         ×16 is 16 requests pipelined per connection) against the `http_hello` example in release \
         and against hyper 1.x serving the same routes (crates/bench `serve --impl hyper`; \
         `hyper flush` is hyper with `pipeline_flush(true)`). CPU is the server process's, per \
         request. Targets: throughput ≥ 1.0× hyper, hyper CPU / enchufe CPU ≥ 1.0.\n\n\
         | workload | against | hyper | enchufe | enchufe / hyper | ≥ 1.0 | hyper CPU/req | enchufe CPU/req | hyper / enchufe CPU | ≥ 1.0 |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut used = Vec::new();
    for d in duels {
        for them in [Who::Hyper, Who::HyperFlush] {
            if d.index(them).is_none() {
                continue;
            }
            let cells = rate_and_cpu(d, [them, Who::Http], 1.0);
            let (label, them) = (d.workload.label(), them.label());
            let _ = writeln!(t, "| {label} | {them} | {cells} |");
        }
        used.push(d);
    }
    t + &errors(&used)
}

pub(super) fn idle_table(rows: &[IdleRow]) -> String {
    let mut t = String::from(
        "## Idle memory per connection\n\n\
         A fresh server; connections opened 64 at a time, each echoes one 16-byte frame and \
         then stays open and silent. Server VmRSS after minus before, over the connections. \
         Target (enchufe): ≤ 4 KiB per connection at 10,000.\n\n\
         | server | connections | RSS before | RSS after | per connection |\n\
         |---|---|---|---|---|\n",
    );
    for r in rows {
        let per = r.after_kib.saturating_sub(r.before_kib) as f64 / r.conns as f64;
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | **{per:.1} KiB** |",
            r.server,
            r.conns,
            kib(r.before_kib),
            kib(r.after_kib),
        );
    }
    t
}

pub(super) fn abuse_table(rows: &[AbuseRow], secs: f64) -> String {
    let mut t = format!(
        "## Abusive clients (enchufe echo_server, default config)\n\n\
         A fresh server each; its memory sampled every 50 ms while the client ran ({secs} s), \
         growth over its idle baseline. never-read: one connection sending 8 MiB frames and \
         never reading (stops at 2 GiB written). trickle: 1,000 connections each declaring an \
         8 MiB − 1 frame, then sending one byte per second.\n\n\
         | case | sent | closed by server | peak RSS growth | peak VmSize growth | peak RSS (VmHWM) growth | RSS growth after the client left | target (RSS) |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} in {:.1} s | {} of {} | **{}** | {} | {} | {} | {} |",
            r.case,
            bytes(r.report.sent_bytes),
            r.report.secs,
            r.report.closed_by_server,
            r.report.conns,
            kib(r.growth.rss),
            kib(r.growth.size),
            kib(r.growth.hwm),
            kib(r.after_rss_kib),
            r.target,
        );
    }
    t
}
