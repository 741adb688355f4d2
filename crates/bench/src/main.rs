//! `enchufe-bench`: enchufe against a hand-written floor and against tarpc,
//! in separate processes over loopback, reported as ratios measured side by
//! side in one run (`BENCHMARKS.md`, "Comparison harness").
//!
//! ```text
//! cargo run --release -p enchufe-bench -- compare --quick   # under 3 minutes on 2 cores
//! cargo run --release -p enchufe-bench -- compare           # ~7 minutes
//! cargo run --release -p enchufe-bench -- compare --only mux,idle
//! cargo run --release -p enchufe-bench -- compare --only http --quick   # ~1 minute
//! cargo run --release -p enchufe-bench -- transfer          # 1 GiB; needs iperf3
//! ```
//!
//! `compare` builds the `echo_server` example in release, then re-executes
//! this binary for everything else:
//!
//! ```text
//!   compare ──spawns──> servers:  serve --impl floor | tarpc   (this binary)
//!      │                          serve --impl hyper | hyper-flush
//!      │                          echo_server --plain|--mux    (the example)
//!      │                          http_hello                   (the example)
//!      │                each prints `listening on 127.0.0.1:PORT`
//!      └────spawns──> clients:  load  (generator | Client | tarpc | http) -> JSON
//!                               hold  (idle connections), abuse -> JSON
//!   and reads server CPU (/proc/PID/stat) and memory (/proc/PID/status).
//! ```
//!
//! Map: [`compare`] orchestrates (options, run order, server processes),
//! its submodules `duel` running the contenders' rounds, `memory` the idle
//! and abuse rows and `report` printing the markdown; [`floor`] is the
//! hand-written echo server; [`rpc`] is tarpc's side; [`hyper_hello`]
//! hyper's HTTP server; [`load`] the load
//! generators and the byte-for-byte check ([`payload`]); [`tools`] the idle
//! holder and the abusive clients; [`child`] and [`procfs`] the process
//! plumbing.

mod child;
mod compare;
mod error;
mod flight;
mod floor;
mod hyper_hello;
mod load;
mod payload;
mod peers;
mod procfs;
mod rpc;
mod scale;
mod tools;
mod transfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::net::TcpListener;

use crate::error::Result;

/// Compares enchufe with a hand-written Tokio floor and with tarpc.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs every comparison and prints markdown tables of ratios.
    Compare(compare::Opts),
    /// A large file through the file_transfer example (separate processes)
    /// against iperf3's loopback rate; peak memory of both ends.
    Transfer(transfer::Opts),
    /// Serves the floor or tarpc echo, or hyper's HTTP hello; prints
    /// `listening on ADDR`.
    Serve {
        /// Which server.
        #[arg(long = "impl", value_enum)]
        imp: Impl,
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
        addr: String,
        /// Also stop when standard input ends (the harness holds it open,
        /// so a harness that dies takes its servers with it).
        #[arg(long)]
        exit_on_stdin_eof: bool,
    },
    /// One load run against a server; prints a JSON report.
    Load(load::Spec),
    /// The WebSocket, UDP and TLS peers: servers, loads, idle holders.
    Peer {
        #[command(subcommand)]
        cmd: peers::Cmd,
    },
    /// Opens connections, echoes one frame on each, holds them idle.
    Hold {
        #[arg(long, value_name = "HOST:PORT")]
        addr: std::net::SocketAddr,
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// How long to hold them.
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
    },
    /// Holds idle connections for the scale section: opens them up to N on
    /// each `open N` line of standard input, from many source addresses,
    /// prints `held N`; drops them all when standard input ends.
    ScaleHold {
        #[arg(long, value_name = "HOST:PORT")]
        addr: std::net::SocketAddr,
        /// Most connections it will be asked for (sizes its open-file limit).
        #[arg(long, default_value_t = 100_000)]
        max: usize,
    },
    /// A misbehaving client, bounded in time and bytes; prints a JSON report.
    Abuse {
        #[arg(value_enum)]
        case: Abuse,
        #[arg(long, value_name = "HOST:PORT")]
        addr: std::net::SocketAddr,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Connections (trickle).
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Most bytes to write (never-read).
        #[arg(long, default_value_t = 2 << 30)]
        max_bytes: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Impl {
    /// The hand-written tokio-util `Framed` echo.
    Floor,
    /// A tarpc echo service, bincode over TCP, `TCP_NODELAY` on.
    Tarpc,
    /// hyper's HTTP/1.1 hello server (its defaults).
    Hyper,
    /// The same with `pipeline_flush(true)`.
    HyperFlush,
    /// The same with tarpc's defaults: Nagle on.
    TarpcNagle,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Abuse {
    /// Sends 8 MiB frames and never reads.
    NeverRead,
    /// Declares 8 MiB − 1 bytes, then sends one byte per second.
    Trickle,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_file_limit();
    let result = match cli.cmd {
        Cmd::Compare(opts) => {
            // Dropping the comparison kills every child (`kill_on_drop`).
            tokio::select! {
                r = compare::run(opts) => r,
                () = stop_signal() => {
                    eprintln!("interrupted; children killed");
                    return ExitCode::from(130);
                }
            }
        }
        Cmd::Transfer(opts) => tokio::select! {
            r = transfer::run(opts) => r,
            () = stop_signal() => {
                eprintln!("interrupted; children killed");
                return ExitCode::from(130);
            }
        },
        Cmd::Serve {
            imp,
            addr,
            exit_on_stdin_eof,
        } => serve(imp, &addr, exit_on_stdin_eof).await,
        Cmd::Load(spec) => load_and_report(&spec).await,
        Cmd::Peer { cmd } => peers::run(cmd).await,
        Cmd::Hold { addr, conns, secs } => tools::hold(addr, conns, secs).await,
        Cmd::ScaleHold { addr, max } => scale::hold(addr, max).await,
        Cmd::Abuse {
            case,
            addr,
            secs,
            conns,
            max_bytes,
        } => {
            let report = match case {
                Abuse::NeverRead => tools::never_read(addr, secs, max_bytes).await,
                Abuse::Trickle => tools::trickle(addr, conns, secs).await,
            };
            report.map(|r| println!("{}", serde_json::to_string(&r).expect("plain data")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enchufe-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn load_and_report(spec: &load::Spec) -> Result<()> {
    let mut report = load::run(spec).await?;
    report.client_cpu_secs = procfs::cpu_secs(std::process::id())?;
    println!("{}", serde_json::to_string(&report).expect("plain data"));
    Ok(())
}

async fn serve(imp: Impl, addr: &str, exit_on_stdin_eof: bool) -> Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let server = match imp {
        Impl::Floor => tokio::spawn(floor::serve(listener)),
        Impl::Hyper => tokio::spawn(hyper_hello::serve(listener, false)),
        Impl::HyperFlush => tokio::spawn(hyper_hello::serve(listener, true)),
        Impl::Tarpc => tokio::spawn(rpc::serve(listener, true)),
        Impl::TarpcNagle => tokio::spawn(rpc::serve(listener, false)),
    };
    wait_to_stop(exit_on_stdin_eof).await;
    server.abort();
    Ok(())
}

/// Until Ctrl-C or SIGTERM, or (when asked) the end of standard input.
pub(crate) async fn wait_to_stop(exit_on_stdin_eof: bool) {
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    if exit_on_stdin_eof {
        // A plain thread: a blocking read cannot be cancelled, and this one
        // must not keep the process alive once `main` returns.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = eof_tx.send(());
        });
    }
    tokio::select! {
        () = stop_signal() => {}
        Ok(()) = eof_rx => {}
    }
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Lifts the soft limit on open files to the hard one: 10,000 idle
/// connections need 10,000 descriptors in the server and in the holder.
/// Children inherit it, enchufe's echo_server included.
fn raise_file_limit() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
