//! `compare`: every comparison in one run, as markdown tables of ratios.
//!
//! The harness starts servers and load generators as separate processes
//! on 127.0.0.1 with OS-chosen ports, re-executing its own binary (`serve`,
//! `load`, `hold`, `abuse`) and enchufe's `echo_server` example, built in
//! release first. Each comparison is a duel: for every round, each
//! contender runs once, back to back, the order rotating between rounds
//! (A B, B A, ...), so that both sides see the same machine. A ratio is the
//! median of the per-round ratios; absolute figures are medians too, and
//! move a lot more between runs than the ratios do.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use crate::child::{self, Server, ServerSpec};
use crate::error::{Error, Result};
use crate::load::{Kind, Report, Spec};
use crate::procfs;
use crate::tools::AbuseReport;

/// `compare`'s options; `--quick` picks small defaults for the others.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Opts {
    /// About two minutes: 4 rounds of 1 s runs, 1,000 idle connections, 4 s
    /// of abuse. Without it, about six minutes: 6 rounds of 2.5 s runs,
    /// 10,000 idle connections, 10 s of abuse. (An even number of rounds
    /// puts each side of a two-way duel first equally often.)
    #[arg(long)]
    quick: bool,
    /// Rounds of each duel.
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per load run.
    #[arg(long)]
    secs: Option<f64>,
    /// Idle connections held for the memory rows.
    #[arg(long)]
    idle_conns: Option<usize>,
    /// Seconds each abusive client runs.
    #[arg(long)]
    abuse_secs: Option<f64>,
    /// Use this echo_server binary instead of building the example.
    #[arg(long, value_name = "PATH")]
    echo_server: Option<PathBuf>,
    /// Run only these sections.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
}

/// A part of the comparison, one table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// Plain echo throughput and server CPU per frame, enchufe vs floor.
    Plain,
    /// p99 round trip at 32 connections × 1 in flight, enchufe vs floor.
    Latency,
    /// enchufe `Client` pipelining vs the hand-written generator.
    Client,
    /// Multiplexed: enchufe `Client` + echo_server --mux vs tarpc.
    Mux,
    /// Idle memory per connection, enchufe vs floor.
    Idle,
    /// Server memory under abusive clients (enchufe only).
    Abuse,
}

/// The server processes the duels run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Srv {
    Floor,
    Plain,
    Mux,
    Tarpc,
}

/// A contender: a load generator against a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Hand-written generator → floor.
    Floor,
    /// Hand-written generator → enchufe echo_server (plain).
    Enchufe,
    /// enchufe `Client` (plain) → enchufe echo_server (plain).
    Client,
    /// enchufe `Client` (multiplexed) → enchufe echo_server --mux.
    EnchufeMux,
    /// tarpc client → tarpc server.
    Tarpc,
}

impl Who {
    fn server(self) -> Srv {
        match self {
            Who::Floor => Srv::Floor,
            Who::Enchufe | Who::Client => Srv::Plain,
            Who::EnchufeMux => Srv::Mux,
            Who::Tarpc => Srv::Tarpc,
        }
    }

    fn load(self) -> Kind {
        match self {
            Who::Floor | Who::Enchufe => Kind::Frames,
            Who::Client => Kind::Client,
            Who::EnchufeMux => Kind::ClientMux,
            Who::Tarpc => Kind::Tarpc,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Who::Floor => "floor",
            Who::Enchufe => "enchufe",
            Who::Client => "enchufe Client",
            Who::EnchufeMux => "enchufe mux",
            Who::Tarpc => "tarpc",
        }
    }
}

/// Payload size and concurrency of a duel.
#[derive(Debug, Clone, Copy)]
struct Workload {
    size: usize,
    conns: usize,
    depth: usize,
    latency: bool,
}

impl Workload {
    const fn new(size: usize, conns: usize, depth: usize) -> Workload {
        Workload {
            size,
            conns,
            depth,
            latency: false,
        }
    }

    fn label(&self) -> String {
        let size = match self.size {
            s if s >= 1 << 20 => format!("{} MiB", s >> 20),
            s if s >= 1 << 10 => format!("{} KiB", s >> 10),
            s => format!("{s} B"),
        };
        let conns = if self.conns == 1 { "conn" } else { "conns" };
        format!("{size}, {} {conns} × {}", self.conns, self.depth)
    }
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The plain-profile workloads; the first two also duel the enchufe Client.
const PLAIN: [Workload; 5] = [
    Workload::new(16, 1, 64),
    Workload::new(16, 32, 16),
    Workload::new(KIB, 32, 16),
    Workload::new(64 * KIB, 1, 4),
    Workload::new(MIB, 1, 4),
];
const LATENCY: Workload = Workload {
    latency: true,
    ..Workload::new(16, 32, 1)
};
const MUX: [Workload; 3] = [
    Workload::new(16, 32, 16),
    Workload::new(16, 1, 64),
    Workload::new(KIB, 32, 16),
];

/// One run's measurements.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Echoes per second.
    rate: f64,
    /// Server CPU (user + system) per echo, µs.
    server_cpu: f64,
    /// Load process CPU per echo, µs.
    client_cpu: f64,
    p50: f64,
    p99: f64,
}

/// Every round of one workload: `samples[contender][round]`.
#[derive(Debug)]
struct Duel {
    workload: Workload,
    who: Vec<Who>,
    samples: Vec<Vec<Option<Sample>>>,
    errors: Vec<String>,
}

/// A median, with the range it came from.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(mut v: Vec<f64>) -> Option<Spread> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

impl Duel {
    fn index(&self, who: Who) -> Option<usize> {
        self.who.iter().position(|&w| w == who)
    }

    /// Median over rounds of one contender's `f`.
    fn median(&self, who: Who, f: fn(&Sample) -> f64) -> Option<f64> {
        let i = self.index(who)?;
        spread(self.samples[i].iter().flatten().map(f).collect()).map(|s| s.median)
    }

    /// `f(a) / f(b)` per round (rounds where both ran), summarised.
    fn ratio(&self, a: Who, b: Who, f: fn(&Sample) -> f64) -> Option<Spread> {
        let (a, b) = (self.index(a)?, self.index(b)?);
        let per_round = self.samples[a]
            .iter()
            .zip(&self.samples[b])
            .filter_map(|(x, y)| Some(f(x.as_ref()?) / f(y.as_ref()?)))
            .collect();
        spread(per_round)
    }
}

/// Memory held by idle connections on one server.
#[derive(Debug)]
struct IdleRow {
    server: &'static str,
    conns: usize,
    before_kib: u64,
    after_kib: u64,
}

/// Server memory while an abusive client ran.
#[derive(Debug)]
struct AbuseRow {
    case: &'static str,
    target: &'static str,
    report: AbuseReport,
    peak_rss_kib: u64,
    peak_size_kib: u64,
    hwm_kib: u64,
    after_rss_kib: u64,
}

/// The settings of a run, after `--quick` picked its defaults.
#[derive(Debug)]
struct Bench {
    exe: PathBuf,
    echo_server: PathBuf,
    logs: PathBuf,
    rounds: usize,
    secs: f64,
    idle_conns: usize,
    abuse_secs: f64,
    servers: HashMap<Srv, Server>,
}

/// Runs the sections asked for and prints their tables on stdout as each
/// finishes; progress goes to stderr.
pub(crate) async fn run(opts: Opts) -> Result<()> {
    let started = Instant::now();
    let all = opts.only.is_empty();
    let on = |s: Section| all || opts.only.contains(&s);
    let exe = std::env::current_exe()?;
    let logs = std::env::temp_dir().join(format!("enchufe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let (rounds, secs, idle_conns, abuse_secs) = if opts.quick {
        (4, 1.0, 1_000, 4.0)
    } else {
        (6, 2.5, 10_000, 10.0)
    };
    let rounds = opts.rounds.unwrap_or(rounds).max(1);
    let secs = opts.secs.unwrap_or(secs);
    let idle_conns = opts.idle_conns.unwrap_or(idle_conns);
    let abuse_secs = opts.abuse_secs.unwrap_or(abuse_secs);

    print_header(rounds, secs).await;
    let echo_server = match &opts.echo_server {
        Some(path) => path.clone(),
        None => build_echo_server().await?,
    };
    let mut bench = Bench {
        exe,
        echo_server,
        logs,
        rounds,
        secs,
        idle_conns,
        abuse_secs,
        servers: HashMap::new(),
    };

    if on(Section::Plain) || on(Section::Client) || on(Section::Latency) {
        let mut plain = Vec::new();
        if on(Section::Plain) || on(Section::Client) {
            for (i, w) in PLAIN.iter().enumerate() {
                let mut who = Vec::new();
                if on(Section::Plain) {
                    who.push(Who::Floor);
                }
                who.push(Who::Enchufe);
                if on(Section::Client) && i < 2 {
                    who.push(Who::Client);
                }
                if who.len() > 1 {
                    plain.push(bench.duel(*w, &who).await);
                }
            }
        }
        if on(Section::Plain) {
            println!("{}", plain_table(&plain));
        }
        if on(Section::Client) {
            println!("{}", client_table(&plain));
        }
        if on(Section::Latency) {
            let duel = bench.duel(LATENCY, &[Who::Floor, Who::Enchufe]).await;
            println!("{}", latency_table(&duel));
        }
        bench.stop_servers().await;
    }

    if on(Section::Mux) {
        let mut mux = Vec::new();
        for w in MUX {
            mux.push(bench.duel(w, &[Who::Tarpc, Who::EnchufeMux]).await);
        }
        println!("{}", mux_table(&mux));
        bench.stop_servers().await;
    }

    if on(Section::Idle) {
        let mut rows = Vec::new();
        for srv in [Srv::Floor, Srv::Plain] {
            match bench.idle(srv).await {
                Ok(row) => rows.push(row),
                Err(e) => eprintln!("idle memory, {srv:?}: {e}"),
            }
        }
        println!("{}", idle_table(&rows));
    }

    if on(Section::Abuse) {
        let mut rows = Vec::new();
        for case in ["never-read", "trickle"] {
            match bench.abuse(case).await {
                Ok(row) => rows.push(row),
                Err(e) => eprintln!("abuse, {case}: {e}"),
            }
        }
        println!("{}", abuse_table(&rows, bench.abuse_secs));
    }

    println!(
        "Finished in {:.0} s; load average {}. Server logs (stderr): `{}`.",
        started.elapsed().as_secs_f64(),
        loadavg(),
        bench.logs.display()
    );
    Ok(())
}

impl Bench {
    /// How to start `srv`; enchufe's example runs with `RUST_LOG=warn` so
    /// that its per-connection `info` lines are not counted as its cost.
    fn server_spec(&self, srv: Srv, max_connections: Option<usize>) -> ServerSpec {
        let ours = |name: &str, imp: &str| ServerSpec {
            name: name.into(),
            program: self.exe.clone(),
            args: [
                "serve",
                "--impl",
                imp,
                "--addr",
                "127.0.0.1:0",
                "--exit-on-stdin-eof",
            ]
            .map(OsString::from)
            .to_vec(),
            env: Vec::new(),
        };
        let enchufe = |name: &str, mux: bool| {
            let mut args: Vec<OsString> = vec!["--addr".into(), "127.0.0.1:0".into()];
            if let Some(n) = max_connections {
                args.extend(["--max-connections".into(), n.to_string().into()]);
            }
            if mux {
                args.push("--mux".into());
            }
            ServerSpec {
                name: name.into(),
                program: self.echo_server.clone(),
                args,
                env: vec![("RUST_LOG".into(), "warn".into())],
            }
        };
        match srv {
            Srv::Floor => ours("floor", "floor"),
            Srv::Tarpc => ours("tarpc", "tarpc"),
            Srv::Plain => enchufe("enchufe", false),
            Srv::Mux => enchufe("enchufe-mux", true),
        }
    }

    /// The running server for `srv`, started (and warmed up) on first use
    /// or again if it died.
    async fn server(&mut self, srv: Srv) -> Result<&Server> {
        let alive = match self.servers.get_mut(&srv) {
            Some(server) => server.is_alive(),
            None => false,
        };
        if !alive {
            if self.servers.remove(&srv).is_some() {
                eprintln!("  ! {srv:?} server had exited; starting it again");
            }
            let spec = self.server_spec(srv, None);
            let server = Server::start(&spec, &self.logs).await?;
            // A short run so that no contender pays for first-touch page
            // faults and lazy initialisation.
            let kind = match srv {
                Srv::Floor | Srv::Plain => Kind::Frames,
                Srv::Mux => Kind::ClientMux,
                Srv::Tarpc => Kind::Tarpc,
            };
            let warm = Spec {
                kind,
                addr: server.addr,
                conns: 4,
                depth: 16,
                size: KIB,
                secs: 0.5,
                frames: None,
                latency: false,
            };
            self.load(&warm).await?;
            self.servers.insert(srv, server);
        }
        Ok(&self.servers[&srv])
    }

    async fn stop_servers(&mut self) {
        for (_, server) in self.servers.drain() {
            server.stop().await;
        }
    }

    /// One `load` process, to the end.
    async fn load(&self, spec: &Spec) -> Result<Report> {
        let mut args = vec!["load".to_owned()];
        args.extend(spec.to_args());
        let limit = Duration::from_secs_f64(spec.secs + 60.0);
        let out = child::output(&self.exe, &args, limit).await?;
        serde_json::from_str(out.trim())
            .map_err(|e| Error::harness(format!("load printed {out:?}: {e}")))
    }

    /// Runs every round of `workload` for each contender.
    async fn duel(&mut self, workload: Workload, who: &[Who]) -> Duel {
        let mut duel = Duel {
            workload,
            who: who.to_vec(),
            samples: vec![Vec::new(); who.len()],
            errors: Vec::new(),
        };
        let names: Vec<&str> = who.iter().map(|w| w.label()).collect();
        eprintln!("{}: {}", workload.label(), names.join(" vs "));
        for round in 0..self.rounds {
            for k in 0..who.len() {
                let i = (k + round) % who.len();
                let sample = self.measure(who[i], workload).await;
                match &sample {
                    Ok(s) => eprintln!(
                        "  round {}/{} {:<15} {:>10}  server {:>9}/frame",
                        round + 1,
                        self.rounds,
                        who[i].label(),
                        rate(s.rate),
                        micros(s.server_cpu)
                    ),
                    Err(e) => {
                        eprintln!("  round {} {}: FAILED: {e}", round + 1, who[i].label());
                        duel.errors.push(format!("{}: {e}", who[i].label()));
                    }
                }
                duel.samples[i].push(sample.ok());
            }
        }
        duel
    }

    /// One load run against `who`'s server, with that server's CPU time
    /// read before and after.
    async fn measure(&mut self, who: Who, w: Workload) -> Result<Sample> {
        let secs = self.secs;
        let server = self.server(who.server()).await?;
        let (pid, addr) = (server.pid, server.addr);
        let spec = Spec {
            kind: who.load(),
            addr,
            conns: w.conns,
            depth: w.depth,
            size: w.size,
            secs,
            frames: None,
            latency: w.latency,
        };
        let cpu_before = procfs::cpu_secs(pid)?;
        let report = self.load(&spec).await?;
        let cpu_after = procfs::cpu_secs(pid)?;
        if report.frames == 0 {
            return Err(Error::harness("no echo came back"));
        }
        let frames = report.frames as f64;
        let latency = report.latency_us;
        Ok(Sample {
            rate: frames / report.secs,
            server_cpu: (cpu_after - cpu_before) * 1e6 / frames,
            client_cpu: report.client_cpu_secs * 1e6 / frames,
            p50: latency.map_or(f64::NAN, |l| l.p50),
            p99: latency.map_or(f64::NAN, |l| l.p99),
        })
    }

    /// RSS of a fresh server before and after `idle_conns` connections that
    /// each echoed one frame and went quiet.
    async fn idle(&self, srv: Srv) -> Result<IdleRow> {
        let n = self.idle_conns;
        eprintln!("idle memory: {n} connections to {srv:?}");
        let spec = self.server_spec(srv, Some(n + 64));
        let server = Server::start(&spec, &self.logs).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = procfs::memory(server.pid)?.rss;
        let args = [
            "hold".to_owned(),
            "--addr".into(),
            server.addr.to_string(),
            "--conns".into(),
            n.to_string(),
            "--secs".into(),
            "600".into(),
        ];
        let (holder, mut lines) = child::spawn_reading(&self.exe, &args, &self.logs, "hold")?;
        let limit = Duration::from_secs(60 + n as u64 / 100);
        let held = tokio::time::timeout(limit, lines.next_line())
            .await
            .map_err(|_| Error::harness(format!("{n} connections not open within {limit:?}")))??;
        if !held.is_some_and(|l| l.starts_with("held")) {
            return Err(Error::harness("hold failed (see hold.log)"));
        }
        // Let the server finish whatever the last echoes started.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let after = procfs::memory(server.pid)?.rss;
        drop(holder); // killed
        server.stop().await;
        Ok(IdleRow {
            server: if srv == Srv::Floor {
                "floor"
            } else {
                "enchufe"
            },
            conns: n,
            before_kib: before,
            after_kib: after,
        })
    }

    /// A fresh enchufe server (default config) under one abusive client;
    /// its memory sampled every 50 ms.
    async fn abuse(&self, case: &'static str) -> Result<AbuseRow> {
        eprintln!("abuse: {case} for {} s", self.abuse_secs);
        let spec = self.server_spec(Srv::Plain, None);
        let server = Server::start(&spec, &self.logs).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base = procfs::memory(server.pid)?;
        let mut args = vec![
            "abuse".to_owned(),
            case.into(),
            "--addr".into(),
            server.addr.to_string(),
            "--secs".into(),
            self.abuse_secs.to_string(),
        ];
        if case == "trickle" {
            args.extend(["--conns".into(), "1000".into()]);
        }
        let (mut client, mut lines) = child::spawn_reading(&self.exe, &args, &self.logs, case)?;
        let mut peak = base;
        let deadline = Instant::now() + Duration::from_secs_f64(self.abuse_secs + 60.0);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut last = None;
        loop {
            tokio::select! {
                line = lines.next_line() => match line? {
                    Some(line) => last = Some(line),
                    None => break,
                },
                _ = tick.tick() => {
                    let m = procfs::memory(server.pid)?;
                    peak.rss = peak.rss.max(m.rss);
                    peak.size = peak.size.max(m.size);
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Error::harness(format!("{case} client did not finish")));
                }
            }
        }
        let status = client.wait().await?;
        let line = last.ok_or_else(|| {
            Error::harness(format!("{case} client failed ({status}, see {case}.log)"))
        })?;
        let report: AbuseReport = serde_json::from_str(&line)
            .map_err(|e| Error::harness(format!("{case} printed {line:?}: {e}")))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = procfs::memory(server.pid)?;
        server.stop().await;
        Ok(AbuseRow {
            case,
            target: if case == "never-read" {
                "≤ 16 MiB"
            } else {
                "bounded (no figure set)"
            },
            report,
            peak_rss_kib: peak.rss.saturating_sub(base.rss),
            peak_size_kib: peak.size.saturating_sub(base.size),
            hwm_kib: after.hwm.saturating_sub(base.rss),
            after_rss_kib: after.rss.saturating_sub(base.rss),
        })
    }
}

/// `cargo build --release --example echo_server` in this workspace; the
/// path of the binary, from cargo's JSON messages.
async fn build_echo_server() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the echo_server example (release)...");
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--example", "echo_server"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::harness("building echo_server failed"));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "echo_server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| Error::harness("cargo built no echo_server executable"))
}

async fn print_header(rounds: usize, secs: f64) {
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
         enchufe = `examples/echo_server` in release, `RUST_LOG=warn`; tarpc 0.38, bincode over TCP; \
         all on Tokio's multi-thread runtime with default workers\n"
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

fn micros(us: f64) -> String {
    if !us.is_finite() {
        "–".into()
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.2} µs")
    }
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
fn ratio(s: Option<Spread>) -> String {
    s.map_or_else(
        || "failed".into(),
        |s| format!("**{:.2}** ({:.2}–{:.2})", s.median, s.min, s.max),
    )
}

/// Whether the median meets a target: `higher` is better, or lower.
fn meets(s: Option<Spread>, target: f64, higher: bool) -> &'static str {
    match s {
        Some(s) if (higher && s.median >= target) || (!higher && s.median <= target) => "yes",
        Some(_) => "no",
        None => "–",
    }
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

fn plain_table(duels: &[Duel]) -> String {
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
        let thr = d.ratio(Who::Enchufe, Who::Floor, |s| s.rate);
        let eff = d.ratio(Who::Floor, Who::Enchufe, |s| s.server_cpu);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.workload.label(),
            opt(d.median(Who::Floor, |s| s.rate), rate),
            opt(d.median(Who::Enchufe, |s| s.rate), rate),
            ratio(thr),
            meets(thr, 0.95, true),
            opt(d.median(Who::Floor, |s| s.server_cpu), micros),
            opt(d.median(Who::Enchufe, |s| s.server_cpu), micros),
            ratio(eff),
            meets(eff, 0.95, true),
        );
        used.push(d);
    }
    t + &errors(&used)
}

fn client_table(duels: &[Duel]) -> String {
    let mut t = String::from(
        "## Plain pipelining: enchufe Client vs the hand-written generator\n\n\
         Both against the same enchufe echo_server (plain profile). The Client runs one task per \
         frame in flight, each calling `request` in a loop on clones of one `Client` per \
         connection. CPU here is the load process's, per frame. Target: Client ≥ 0.8× generator.\n\n\
         | workload | generator | Client | Client / generator | ≥ 0.8 | generator CPU/frame | Client CPU/frame |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut used = Vec::new();
    for d in duels.iter().filter(|d| d.index(Who::Client).is_some()) {
        let r = d.ratio(Who::Client, Who::Enchufe, |s| s.rate);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            d.workload.label(),
            opt(d.median(Who::Enchufe, |s| s.rate), rate),
            opt(d.median(Who::Client, |s| s.rate), rate),
            ratio(r),
            meets(r, 0.8, true),
            opt(d.median(Who::Enchufe, |s| s.client_cpu), micros),
            opt(d.median(Who::Client, |s| s.client_cpu), micros),
        );
        used.push(d);
    }
    t + &errors(&used)
}

fn latency_table(d: &Duel) -> String {
    let r = d.ratio(Who::Enchufe, Who::Floor, |s| s.p99);
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
        opt(d.median(Who::Floor, |s| s.p50), micros),
        opt(d.median(Who::Floor, |s| s.p99), micros),
        opt(d.median(Who::Enchufe, |s| s.p50), micros),
        opt(d.median(Who::Enchufe, |s| s.p99), micros),
        ratio(r),
        meets(r, 1.1, false),
    );
    t + &errors(&[d])
}

fn mux_table(duels: &[Duel]) -> String {
    let mut t = String::from(
        "## Multiplexed: enchufe Client + echo_server --mux vs tarpc\n\n\
         enchufe's `Client` (multiplexed profile) against the echo_server example with `--mux`; \
         tarpc's client against a tarpc echo service. Both: one client per connection, one task \
         per request in flight. Target: enchufe ≥ 3× tarpc at 16 B, 32 × 16.\n\n\
         | workload | tarpc | enchufe | enchufe / tarpc | ≥ 3 | tarpc server CPU/req | enchufe server CPU/req | tarpc client CPU/req | enchufe client CPU/req |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut used = Vec::new();
    for (i, d) in duels.iter().enumerate() {
        let r = d.ratio(Who::EnchufeMux, Who::Tarpc, |s| s.rate);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.workload.label(),
            opt(d.median(Who::Tarpc, |s| s.rate), rate),
            opt(d.median(Who::EnchufeMux, |s| s.rate), rate),
            ratio(r),
            if i == 0 { meets(r, 3.0, true) } else { "" },
            opt(d.median(Who::Tarpc, |s| s.server_cpu), micros),
            opt(d.median(Who::EnchufeMux, |s| s.server_cpu), micros),
            opt(d.median(Who::Tarpc, |s| s.client_cpu), micros),
            opt(d.median(Who::EnchufeMux, |s| s.client_cpu), micros),
        );
        used.push(d);
    }
    t + &errors(&used)
}

fn idle_table(rows: &[IdleRow]) -> String {
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

fn abuse_table(rows: &[AbuseRow], secs: f64) -> String {
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
            kib(r.peak_rss_kib),
            kib(r.peak_size_kib),
            kib(r.hwm_kib),
            kib(r.after_rss_kib),
            r.target,
        );
    }
    t
}
