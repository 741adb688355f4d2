//! `compare`: every comparison in one run, as markdown tables of ratios.
//!
//! The harness starts servers and load generators as separate processes
//! on 127.0.0.1 with OS-chosen ports, re-executing its own binary (`serve`,
//! `load`, `hold`, `abuse`) and enchufe's `echo_server` and `http_hello`
//! examples, built in release first (each only when a section needs it). Each comparison is a duel: for every round, each
//! contender runs once, back to back, the order rotating between rounds
//! (A B, B A, ...), so that both sides see the same machine. A ratio is the
//! median of the per-round ratios; absolute figures are medians too, and
//! move a lot more between runs than the ratios do.
//!
//! Map: this module holds the options, the run order and the server
//! processes; [`duel`] the contenders, workloads and rounds; [`memory`] the
//! idle-connection and abusive-client measurements; [`report`] the header
//! and the markdown tables; [`peers`] the ws, udp and tls sections (their
//! servers and loads are `crate::peers`); [`transfer`] the file transfer
//! against iperf3.

mod bench;
mod duel;
mod memory;
mod peers;
mod report;
mod scale;
mod transfer;
mod units;

use std::collections::HashMap;
use std::path::PathBuf;

use futures::future::{FutureExt, LocalBoxFuture};
use tokio::time::Instant;

use crate::child::{self};
use crate::error::Result;

use self::bench::{Bench, Srv};
use self::duel::{Who, CLIENT, HTTP, LATENCY, MUX, PLAIN};
use self::report::{
    abuse_table, client_table, http_table, idle_table, latency_table, loadavg, mux_table,
    plain_table, print_header,
};

/// `compare`'s options; `--quick` picks small defaults for the others.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Opts {
    /// Under three minutes on 2 cores: 4 rounds of 0.8 s runs (0.5 s for
    /// the ws, udp and tls duels), 1,000 idle connections, 3 s of abuse,
    /// scale up to 10,000. Without it, about seven minutes: 6 rounds of
    /// 2.5 s runs, 10,000 idle connections, 10 s of abuse, scale up to
    /// 100,000. (An even number of rounds puts each side of a two-way duel
    /// first equally often.)
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
    /// Use this http_hello binary instead of building the example.
    #[arg(long, value_name = "PATH")]
    http_hello: Option<PathBuf>,
    /// Most idle connections of the scale section (default 100,000;
    /// 10,000 with `--quick`).
    #[arg(long, value_name = "N")]
    scale_conns: Option<usize>,
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
    /// enchufe `Client` pipelining (request loops, `Client::pipeline`) vs the
    /// hand-written generator, plain and multiplexed.
    Client,
    /// Multiplexed: enchufe `Client` + echo_server --mux vs tarpc.
    Mux,
    /// Idle memory per connection, enchufe vs floor.
    Idle,
    /// Server memory under abusive clients (enchufe only).
    Abuse,
    /// HTTP/1.1 keep-alive and pipelined: http_hello vs hyper.
    Http,
    /// WebSocket: enchufe `Server::web` vs tokio-tungstenite; idle memory.
    Ws,
    /// UDP: `enchufe::udp` vs a raw tokio loop.
    Udp,
    /// TLS: enchufe `Server::tls` vs tokio-rustls + `Framed`; handshakes.
    Tls,
    /// A file between two `file_transfer` processes vs iperf3.
    Transfer,
    /// Idle connections by the 100,000 on one echo_server: memory and an
    /// ordinary client's p99.
    Scale,
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
        (4, 0.8, 1_000, 3.0)
    } else {
        (6, 2.5, 10_000, 10.0)
    };
    let rounds = opts.rounds.unwrap_or(rounds).max(1);
    let secs = opts.secs.unwrap_or(secs);
    let idle_conns = opts.idle_conns.unwrap_or(idle_conns);
    let abuse_secs = opts.abuse_secs.unwrap_or(abuse_secs);

    print_header(rounds, secs).await;
    let frames = [
        Section::Plain,
        Section::Latency,
        Section::Client,
        Section::Mux,
        Section::Idle,
        Section::Abuse,
        Section::Scale,
    ];
    let echo_server = match &opts.echo_server {
        Some(path) => Some(path.clone()),
        None if frames.into_iter().any(on) => Some(child::build_example("echo_server").await?),
        None => None,
    };
    let http_hello = match &opts.http_hello {
        Some(path) => Some(path.clone()),
        None if on(Section::Http) => Some(child::build_example("http_hello").await?),
        None => None,
    };
    let mut bench = Bench {
        exe,
        echo_server,
        http_hello,
        logs,
        rounds,
        secs,
        idle_conns,
        abuse_secs,
        quick: opts.quick,
        servers: HashMap::new(),
    };
    // How long each section took, printed at the end: what to trim when
    // `--quick` grows past its few minutes.
    let mut laps = Laps::new();

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
                    who.extend([Who::Client, Who::Pipeline]);
                }
                if who.len() > 1 {
                    plain.push(bench.duel(*w, &who).await);
                }
            }
        }
        if on(Section::Plain) {
            println!("{}", plain_table(&plain));
        }
        if on(Section::Latency) {
            let duel = bench.duel(LATENCY, &[Who::Floor, Who::Enchufe]).await;
            println!("{}", latency_table(&duel));
        }
        bench.stop_servers().await;
        if on(Section::Client) {
            // The same in the multiplexed profile, against echo_server
            // --mux; the request loops only in the full run (the mux
            // section measures them against tarpc too).
            let who: &[Who] = if bench.quick {
                &[Who::GeneratorMux, Who::PipelineMux]
            } else {
                &[Who::GeneratorMux, Who::EnchufeMux, Who::PipelineMux]
            };
            let mux = bench.duels(&CLIENT, |_| who).await;
            println!("{}", client_table(&plain, &mux));
        }
    }
    laps.lap("plain, latency, client");

    if on(Section::Mux) {
        // tarpc's default transport (Nagle on) too, at the target's
        // workload only.
        let mux = bench
            .duels(&MUX, |i| match i {
                0 => &[Who::Tarpc, Who::TarpcNagle, Who::EnchufeMux],
                _ => &[Who::Tarpc, Who::EnchufeMux],
            })
            .await;
        println!("{}", mux_table(&mux));
    }
    laps.lap("mux");

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
    laps.lap("idle");

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
    laps.lap("abuse");

    if on(Section::Http) {
        // hyper's `pipeline_flush` only matters when requests pipeline.
        let http = bench
            .duels(&HTTP, |i| match i == HTTP.len() - 1 {
                true => &[Who::Hyper, Who::Http, Who::HyperFlush],
                false => &[Who::Hyper, Who::Http],
            })
            .await;
        println!("{}", http_table(&http));
    }
    laps.lap("http");

    // The sections that are one call each, in the order they print; a
    // future does nothing until awaited, so a section not asked for costs
    // nothing.
    let single: [(Section, &str, LocalBoxFuture<'_, String>); 4] = [
        (Section::Ws, "ws", peers::ws(&bench).boxed_local()),
        (Section::Udp, "udp", peers::udp(&bench).boxed_local()),
        (Section::Tls, "tls", peers::tls(&bench).boxed_local()),
        (
            Section::Transfer,
            "transfer",
            transfer::transfer(&bench).boxed_local(),
        ),
    ];
    for (section, name, table) in single {
        if on(section) {
            println!("{}", table.await);
        }
        laps.lap(name);
    }
    if on(Section::Scale) {
        let steps = scale::steps(opts.quick, opts.scale_conns);
        println!("{}", scale::scale(&bench, &steps).await);
    }
    laps.lap("scale");

    println!(
        "Finished in {:.0} s ({}); load average {}. Server logs (stderr): `{}`.",
        started.elapsed().as_secs_f64(),
        laps.summary(),
        loadavg(),
        bench.logs.display()
    );
    Ok(())
}

/// The seconds each section ran, in order.
struct Laps {
    since: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Laps {
    fn new() -> Laps {
        Laps {
            since: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Ends the section `name` (one that did not run took no time and is
    /// left out).
    fn lap(&mut self, name: &'static str) {
        let secs = self.since.elapsed().as_secs_f64();
        if secs >= 0.5 {
            self.done.push((name, secs));
        }
        self.since = Instant::now();
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.0} s"))
            .collect();
        parts.join(", ")
    }
}
