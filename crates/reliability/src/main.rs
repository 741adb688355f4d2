//! The reliability suite: starts real enchufe servers (the `echo_server`
//! example, or this binary's own `serve` where a check needs another
//! handler or every door on one port), attacks them over loopback, measures them from `/proc`, and
//! prints a table of figures, each against its bound. Exits 1 if any bound
//! is missed. `RELIABILITY.md` holds the last full run.
//!
//! ```text
//! scripts/reliability                      # builds, then runs every check
//! enchufe-reliability --only slowloris     # one check (name substring)
//! ```

mod checks;
mod child;
mod doors;
mod kit;
mod proc;
mod serve;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// Attacks a real enchufe server and prints each figure against its bound.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The `echo_server` example binary (default: beside this binary, in
    /// `examples/`).
    #[arg(long, value_name = "PATH")]
    echo_server: Option<PathBuf>,
    /// Directory for the servers' logs.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// Run only the checks whose name contains this.
    #[arg(long, value_name = "NAME")]
    only: Option<String>,
    /// Multiply connection counts by this (1.0: the headline figures).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

#[derive(Subcommand)]
enum Command {
    /// A server for the checks (used by the suite itself).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        addr: String,
        #[arg(long)]
        mux: bool,
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Serve behind TLS, with a certificate for 127.0.0.1 made at
        /// start and written (PEM) to this file for the clients to trust.
        #[arg(long)]
        tls: Option<PathBuf>,
    },
    /// The slowloris check's attackers (used by the suite itself).
    #[command(hide = true)]
    Attack {
        #[arg(long)]
        addr: std::net::SocketAddr,
        #[arg(long, value_enum, default_value = "frames")]
        door: doors::Door,
        #[arg(long)]
        slow: usize,
        #[arg(long)]
        idle: usize,
    },
    /// A client that sends a request, then waits to be killed (used by the
    /// suite itself).
    #[command(hide = true)]
    Hold {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        half: bool,
    },
}

type Check = for<'a> fn(
    &'a kit::Cx,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<kit::Row>, String>> + 'a>,
>;

macro_rules! check {
    ($name:literal, $f:path) => {
        ($name, (|cx| Box::pin($f(cx))) as Check)
    };
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match args.command {
        Some(Command::Serve {
            kind,
            addr,
            mux,
            delay_ms,
            tls,
        }) => {
            let delay = Duration::from_millis(delay_ms);
            if let Err(e) = serve::serve(&kind, &addr, mux, delay, tls.as_deref()).await {
                eprintln!("serve: {e}");
                std::process::exit(2);
            }
        }
        Some(Command::Hold { addr, half }) => {
            if let Err(e) = serve::hold(&addr, half).await {
                eprintln!("hold: {e}");
                std::process::exit(2);
            }
        }
        Some(Command::Attack {
            addr,
            door,
            slow,
            idle,
        }) => {
            proc::raise_nofile();
            checks::attack::attack(addr, door, slow, idle).await;
        }
        None => std::process::exit(run(args).await),
    }
}

/// Checks of targets an open issue sets and the code does not yet meet
/// everywhere: their rows are printed (a miss shows as `MISSED (target)`)
/// but do not fail the suite. A check leaves this list once its target is
/// met, and from then on guards it like every other check.
const TARGETS: &[&str] = &["door-slowloris"];

/// Checks that spend their time waiting for a server's deadlines (seconds
/// of timers, little CPU): they run at once, side by side, each against a
/// server of its own, so the suite takes the longest of them instead of
/// their sum. The others (floods, latency under attack, memory per
/// connection) run alone, one after another, so that no check's load shows
/// in another's figures.
const TOGETHER: &[&str] = &[
    "header",
    "trickle",
    "pushes",
    "echoes",
    "kill-client",
    "kill-server",
    "shutdown",
    "panic",
    "json",
    "door-unfinished",
    "door-never-reads",
];

/// Runs one check: its rows (a check that could not run is a missed row),
/// marked as targets if it is one, and how long it took in seconds.
async fn run_check<'a>(name: &'a str, check: Check, cx: &kit::Cx) -> (&'a str, Vec<kit::Row>, f64) {
    let t = Instant::now();
    // A check of an open issue's target reports its figures without
    // gating: the suite's exit status covers the guarantees already met
    // (see TARGETS).
    let target = TARGETS.contains(&name);
    let rows = match check(cx).await {
        Ok(mut rows) => {
            for r in &mut rows {
                r.target = target;
            }
            rows
        }
        Err(e) => vec![kit::Row {
            check: name.to_string(),
            figure: format!("could not run: {e}"),
            bound: "runs".into(),
            ok: false,
            target,
        }],
    };
    (name, rows, t.elapsed().as_secs_f64())
}

/// Prints a finished check's rows as they come, before the table.
fn report(name: &str, rows: &[kit::Row], secs: f64) {
    for r in rows {
        eprintln!(
            "   {} | {} | {}",
            r.check,
            r.figure,
            if r.ok { "ok" } else { "MISSED" }
        );
    }
    eprintln!("   ({name}: {secs:.1} s)");
}

async fn run(args: Args) -> i32 {
    let nofile = proc::raise_nofile();
    let here = std::env::current_exe().unwrap_or_default();
    let dir = here.parent().map(PathBuf::from).unwrap_or_default();
    let echo = args
        .echo_server
        .unwrap_or_else(|| dir.join("examples").join("echo_server"));
    let logs = args.logs.unwrap_or_else(|| dir.join("reliability-logs"));
    if let Err(e) = std::fs::create_dir_all(&logs) {
        eprintln!("cannot create {}: {e}", logs.display());
        return 2;
    }
    let cx = kit::Cx {
        echo,
        logs,
        scale: args.scale,
    };
    let all: [(&str, Check); 17] = [
        check!("header", checks::memory::header_4gib),
        check!("partial", checks::memory::partial_frames),
        check!("trickle", checks::memory::trickle),
        check!("slowloris", checks::attack::slowloris),
        check!("pushes", checks::readers::never_reads_pushes),
        check!("echoes", checks::readers::never_reads_echoes),
        check!("kill-client", checks::crash::kill_client),
        check!("kill-server", checks::crash::kill_server),
        check!("shutdown", checks::crash::shutdown),
        check!("panic", checks::crash::panics),
        check!("json", checks::input::deep_json),
        check!("malformed", checks::input::malformed_flood),
        // Every door of one port (frames, HTTP, WebSocket), one server
        // per check.
        check!("door-slowloris", checks::doors::slowloris),
        check!("door-unfinished", checks::doors::unfinished),
        check!("door-never-reads", checks::doors::never_reads),
        check!("door-empty", checks::doors::empty),
        check!("door-idle-memory", checks::doors::idle_memory),
    ];
    eprintln!(
        "enchufe reliability suite: open-file limit {nofile}, scale {}, logs in {}",
        cx.scale,
        cx.logs.display()
    );
    let start = Instant::now();
    let chosen = all
        .into_iter()
        .filter(|(name, _)| args.only.as_deref().is_none_or(|only| name.contains(only)));
    let (together, alone): (Vec<_>, Vec<_>) = chosen.partition(|(name, _)| TOGETHER.contains(name));
    let mut rows = Vec::new();
    if !together.is_empty() {
        let names: Vec<_> = together.iter().map(|(name, _)| *name).collect();
        eprintln!("-- side by side: {}", names.join(", "));
        let runs = together
            .into_iter()
            .map(|(name, check)| run_check(name, check, &cx));
        for (name, r, secs) in futures::future::join_all(runs).await {
            report(name, &r, secs);
            rows.extend(r);
        }
    }
    for (name, check) in alone {
        eprintln!("-- {name}");
        let (name, r, secs) = run_check(name, check, &cx).await;
        report(name, &r, secs);
        rows.extend(r);
    }
    println!("| check | figure | bound | ok |");
    println!("| --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.check,
            r.figure,
            r.bound,
            match (r.ok, r.target) {
                (true, _) => "ok",
                (false, false) => "**MISSED**",
                (false, true) => "**MISSED** (target)",
            }
        );
    }
    let missed = rows.iter().filter(|r| !r.ok && !r.target).count();
    let targets_missed = rows.iter().filter(|r| !r.ok && r.target).count();
    println!("\n({:.0} s)", start.elapsed().as_secs_f64());
    println!("(targets not yet met, reported without failing: {targets_missed})");
    println!(
        "reliability: {} passed, {missed} failed",
        rows.len() - missed - targets_missed
    );
    i32::from(missed > 0)
}
