//! Contenders, workloads and the rounds of a duel: each contender runs once
//! per round, back to back, the order rotating between rounds.

use crate::error::{Error, Result};
use crate::load::{Kind, Percentiles, Spec};
use crate::procfs;

use super::bench::{Bench, Srv};
use super::units::{micros, rate, KIB};

/// A contender: a load generator against a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
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
    /// HTTP generator → enchufe http_hello.
    Http,
    /// HTTP generator → hyper (its defaults).
    Hyper,
    /// HTTP generator → hyper with `pipeline_flush(true)`.
    HyperFlush,
    /// The same, both with Nagle on (tarpc's default transport).
    TarpcNagle,
    /// enchufe `Client::pipeline` (plain) → enchufe echo_server (plain).
    Pipeline,
    /// enchufe `Client::pipeline` (multiplexed) → enchufe echo_server --mux.
    PipelineMux,
    /// Hand-written generator, multiplexed → enchufe echo_server --mux.
    GeneratorMux,
}

impl Who {
    fn server(self) -> Srv {
        match self {
            Who::Floor => Srv::Floor,
            Who::Enchufe | Who::Client | Who::Pipeline => Srv::Plain,
            Who::EnchufeMux | Who::PipelineMux | Who::GeneratorMux => Srv::Mux,
            Who::Tarpc => Srv::Tarpc,
            Who::Http => Srv::Http,
            Who::Hyper => Srv::Hyper,
            Who::HyperFlush => Srv::HyperFlush,
            Who::TarpcNagle => Srv::TarpcNagle,
        }
    }

    fn load(self) -> Kind {
        match self {
            Who::Floor | Who::Enchufe => Kind::Frames,
            Who::Client => Kind::Client,
            Who::EnchufeMux => Kind::ClientMux,
            Who::Tarpc => Kind::Tarpc,
            Who::Http | Who::Hyper | Who::HyperFlush => Kind::Http,
            Who::TarpcNagle => Kind::TarpcNagle,
            Who::Pipeline => Kind::ClientPipeline,
            Who::PipelineMux => Kind::ClientMuxPipeline,
            Who::GeneratorMux => Kind::FramesMux,
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Who::Floor => "floor",
            Who::Enchufe => "enchufe",
            Who::Client => "enchufe Client",
            Who::EnchufeMux => "enchufe mux",
            Who::Tarpc => "tarpc",
            Who::Http => "enchufe http",
            Who::Hyper => "hyper",
            Who::HyperFlush => "hyper flush",
            Who::TarpcNagle => "tarpc (Nagle)",
            Who::Pipeline => "Client pipeline",
            Who::PipelineMux => "mux pipeline",
            Who::GeneratorMux => "mux generator",
        }
    }
}

/// Payload size and concurrency of a duel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Workload {
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

    pub(super) fn label(&self) -> String {
        let size = match self.size {
            // HTTP: `GET /hola/N`, a ~35-byte request, a ~150-byte reply.
            0 => "GET".to_owned(),
            s if s >= 1 << 20 => format!("{} MiB", s >> 20),
            s if s >= 1 << 10 => format!("{} KiB", s >> 10),
            s => format!("{s} B"),
        };
        let conns = if self.conns == 1 { "conn" } else { "conns" };
        format!("{size}, {} {conns} × {}", self.conns, self.depth)
    }
}

const MIB: usize = 1 << 20;

/// The plain-profile workloads; the first two also duel the enchufe Client
/// ([`CLIENT`]).
pub(super) const PLAIN: [Workload; 5] = [
    Workload::new(16, 1, 64),
    Workload::new(16, 32, 16),
    Workload::new(KIB, 32, 16),
    Workload::new(64 * KIB, 1, 4),
    Workload::new(MIB, 1, 4),
];
/// The `Client` section's workloads, in both profiles.
pub(super) const CLIENT: [Workload; 2] = [Workload::new(16, 1, 64), Workload::new(16, 32, 16)];
pub(super) const LATENCY: Workload = Workload {
    latency: true,
    ..Workload::new(16, 32, 1)
};
/// HTTP/1.1 keep-alive: one connection, 64, and 64 pipelining ×16 (the
/// last also against hyper with `pipeline_flush`).
pub(super) const HTTP: [Workload; 3] = [
    Workload::new(0, 1, 1),
    Workload::new(0, 64, 1),
    Workload::new(0, 64, 16),
];
pub(super) const MUX: [Workload; 3] = [
    Workload::new(16, 32, 16),
    Workload::new(16, 1, 64),
    Workload::new(KIB, 32, 16),
];

/// One run's measurements.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    /// Echoes per second.
    pub(super) rate: f64,
    /// Server CPU (user + system) per echo, µs.
    pub(super) server_cpu: f64,
    /// Load process CPU per echo, µs.
    pub(super) client_cpu: f64,
    /// Round trips, µs; NaN when the run did not time them.
    pub(super) latency: Percentiles,
}

/// Every round of one workload: `samples[contender][round]`.
#[derive(Debug)]
pub(super) struct Duel {
    pub(super) workload: Workload,
    who: Vec<Who>,
    samples: Vec<Vec<Option<Sample>>>,
    pub(super) errors: Vec<String>,
}

/// A median, with the range it came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spread {
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

pub(super) fn spread(mut v: Vec<f64>) -> Option<Spread> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
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
    pub(super) fn index(&self, who: Who) -> Option<usize> {
        self.who.iter().position(|&w| w == who)
    }

    /// Median over rounds of one contender's `f`.
    pub(super) fn median(&self, who: Who, f: fn(&Sample) -> f64) -> Option<f64> {
        let i = self.index(who)?;
        spread(self.samples[i].iter().flatten().map(f).collect()).map(|s| s.median)
    }

    /// `f(a) / f(b)` per round (rounds where both ran), summarised.
    pub(super) fn ratio(&self, a: Who, b: Who, f: fn(&Sample) -> f64) -> Option<Spread> {
        let (a, b) = (self.index(a)?, self.index(b)?);
        let per_round = self.samples[a]
            .iter()
            .zip(&self.samples[b])
            .filter_map(|(x, y)| Some(f(x.as_ref()?) / f(y.as_ref()?)))
            .collect();
        spread(per_round)
    }
}

/// `run`'s result, and the CPU seconds (user + system) the server `pid`
/// spent while it ran.
pub(super) async fn with_cpu<R>(
    pid: u32,
    run: impl std::future::Future<Output = Result<R>>,
) -> Result<(R, f64)> {
    let before = procfs::cpu_secs(pid)?;
    let report = run.await?;
    Ok((report, procfs::cpu_secs(pid)? - before))
}

/// Echoes per second over `secs`, and `cpu_secs` in µs per echo; an error
/// when no echo came back.
pub(super) fn per_echo(echoes: u64, secs: f64, cpu_secs: f64) -> Result<(f64, f64)> {
    if echoes == 0 {
        return Err(Error::harness("no echo came back"));
    }
    let n = echoes as f64;
    Ok((n / secs, cpu_secs * 1e6 / n))
}

impl Bench {
    /// Every workload of a section, each dueled by `who(i)` (`i` its place
    /// in `workloads`); then the section's servers are stopped.
    pub(super) async fn duels<'w>(
        &mut self,
        workloads: &[Workload],
        who: impl Fn(usize) -> &'w [Who],
    ) -> Vec<Duel> {
        let mut duels = Vec::new();
        for (i, w) in workloads.iter().enumerate() {
            duels.push(self.duel(*w, who(i)).await);
        }
        self.stop_servers().await;
        duels
    }

    /// Runs every round of `workload` for each contender.
    pub(super) async fn duel(&mut self, workload: Workload, who: &[Who]) -> Duel {
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
        let (report, cpu) = with_cpu(pid, self.load(&spec)).await?;
        let (rate, server_cpu) = per_echo(report.frames, report.secs, cpu)?;
        Ok(Sample {
            rate,
            server_cpu,
            client_cpu: report.client_cpu_secs * 1e6 / report.frames as f64,
            latency: report.latency_us.unwrap_or(Percentiles::UNTIMED),
        })
    }
}
