//! The `ws`, `udp` and `tls` sections: enchufe against the best peer on
//! each transport, both servers started by this binary (`peer serve`) and
//! driven by the same load generator (`peer load`), interleaved round by
//! round as the frame duels are.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::child::{self, Server, ServerSpec};
use crate::error::{Error, Result};
use crate::peers::{self, Impl, Kind, Report, Spec};
use crate::procfs;

use super::bench::Bench;
use super::duel::{per_echo, spread, with_cpu, Spread};
use super::report::{meets, ratio};
use super::units::{micros, rate};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// One load shape.
#[derive(Debug, Clone, Copy)]
struct Shape {
    kind: Kind,
    size: usize,
    conns: usize,
    depth: usize,
}

impl Shape {
    const fn new(kind: Kind, size: usize, conns: usize, depth: usize) -> Shape {
        Shape {
            kind,
            size,
            conns,
            depth,
        }
    }

    fn label(&self) -> String {
        let size = match self.size {
            s if s >= MIB => format!("{} MiB", s / MIB),
            s if s >= KIB => format!("{} KiB", s / KIB),
            s => format!("{s} B"),
        };
        match self.kind {
            Kind::Handshake => format!("handshakes, {} at a time, {size} echoed", self.depth),
            Kind::Udp => {
                let socks = if self.conns == 1 { "socket" } else { "sockets" };
                format!("{size}, {} {socks} × {}", self.conns, self.depth)
            }
            _ => {
                let conns = if self.conns == 1 { "conn" } else { "conns" };
                format!("{size}, {} {conns} × {}", self.conns, self.depth)
            }
        }
    }
}

/// The WebSocket section's shapes: small messages pipelined, then 1 MiB.
const WS: [Shape; 2] = [
    Shape::new(Kind::Ws, 64, 32, 16),
    Shape::new(Kind::Ws, MIB, 1, 4),
];
/// The UDP section's shapes: small datagrams on one socket, then 1 KiB on 8.
const UDP: [Shape; 2] = [
    Shape::new(Kind::Udp, 64, 1, 64),
    Shape::new(Kind::Udp, KIB, 8, 16),
];
/// The TLS section's shapes: small frames, 1 MiB frames, handshakes.
const TLS: [Shape; 3] = [
    Shape::new(Kind::Tls, 16, 32, 16),
    Shape::new(Kind::Tls, MIB, 1, 4),
    Shape::new(Kind::Handshake, 16, 1, 8),
];

/// One run: messages per second, server CPU per message (µs), losses.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rate: f64,
    cpu: f64,
    lost: u64,
}

/// Every round of one shape: `[ours, theirs][round]`.
#[derive(Debug)]
struct Row {
    shape: Shape,
    samples: [Vec<Option<Sample>>; 2],
    errors: Vec<String>,
}

impl Row {
    fn median(&self, side: usize, f: fn(&Sample) -> f64) -> Option<f64> {
        spread(self.samples[side].iter().flatten().map(f).collect()).map(|s| s.median)
    }

    /// `f(ours) / f(theirs)` per round, summarised.
    fn ratio(&self, f: fn(&Sample) -> f64) -> Option<Spread> {
        let per_round = self.samples[0]
            .iter()
            .zip(&self.samples[1])
            .filter_map(|(a, b)| Some(f(a.as_ref()?) / f(b.as_ref()?)))
            .collect();
        spread(per_round)
    }

    fn lost(&self) -> [u64; 2] {
        [0, 1].map(|i| self.samples[i].iter().flatten().map(|s| s.lost).sum())
    }
}

/// The servers of one section, started on first use.
struct Peers<'a> {
    bench: &'a Bench,
    tls: Option<(PathBuf, PathBuf)>,
    running: HashMap<Impl, Server>,
}

impl<'a> Peers<'a> {
    /// No server runs yet; with `tls` (certificate and key files), they
    /// serve TLS.
    fn new(bench: &'a Bench, tls: Option<(PathBuf, PathBuf)>) -> Self {
        Peers {
            bench,
            tls,
            running: HashMap::new(),
        }
    }

    fn spec(&self, imp: Impl) -> ServerSpec {
        let name = clap::ValueEnum::to_possible_value(&imp)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        let mut args: Vec<std::ffi::OsString> = vec![
            "peer".into(),
            "serve".into(),
            "--impl".into(),
            name.clone().into(),
            "--exit-on-stdin-eof".into(),
        ];
        if let Some((cert, key)) = &self.tls {
            args.extend(["--cert".into(), cert.into(), "--key".into(), key.into()]);
        }
        ServerSpec {
            name,
            program: self.bench.exe.clone(),
            args,
            env: Vec::new(),
        }
    }

    fn load_spec(&self, shape: Shape, addr: std::net::SocketAddr, secs: f64) -> Spec {
        Spec {
            kind: shape.kind,
            addr,
            conns: shape.conns,
            depth: shape.depth,
            size: shape.size,
            secs,
            cert: self.tls.as_ref().map(|(c, _)| c.clone()),
        }
    }

    async fn load(&self, spec: &Spec) -> Result<Report> {
        let limit = Duration::from_secs_f64(spec.secs + 60.0);
        let out = child::output(&self.bench.exe, &spec.to_args(), limit).await?;
        serde_json::from_str(out.trim())
            .map_err(|e| Error::harness(format!("peer load printed {out:?}: {e}")))
    }

    /// The running server for `imp`, started and warmed up (a short run
    /// of `shape`) on first use or if it died.
    async fn server(&mut self, imp: Impl, shape: Shape) -> Result<(u32, std::net::SocketAddr)> {
        let alive = self.running.get_mut(&imp).is_some_and(Server::is_alive);
        if !alive {
            self.running.remove(&imp);
            let server = Server::start(&self.spec(imp), &self.bench.logs).await?;
            let warm = self.load_spec(shape, server.addr, 0.3);
            self.load(&warm).await?;
            self.running.insert(imp, server);
        }
        let s = &self.running[&imp];
        Ok((s.pid, s.addr))
    }

    async fn measure(&mut self, imp: Impl, shape: Shape, secs: f64) -> Result<Sample> {
        let (pid, addr) = self.server(imp, shape).await?;
        let spec = self.load_spec(shape, addr, secs);
        let (report, cpu) = with_cpu(pid, self.load(&spec)).await?;
        let (rate, cpu) = per_echo(report.frames, report.secs, cpu)?;
        Ok(Sample {
            rate,
            cpu,
            lost: report.lost,
        })
    }

    /// Every round of `shape`, ours and theirs back to back, the order
    /// rotating between rounds.
    async fn duel(&mut self, pair: [Impl; 2], shape: Shape) -> Row {
        let (rounds, secs) = (self.bench.rounds, self.bench.peer_secs());
        let mut row = Row {
            shape,
            samples: [Vec::new(), Vec::new()],
            errors: Vec::new(),
        };
        eprintln!("{}: {:?} vs {:?}", shape.label(), pair[0], pair[1]);
        for round in 0..rounds {
            for k in 0..2 {
                let side = (k + round) % 2;
                let sample = self.measure(pair[side], shape, secs).await;
                match &sample {
                    Ok(s) => eprintln!(
                        "  round {}/{rounds} {:<14} {:>10}  server {:>9}/msg",
                        round + 1,
                        format!("{:?}", pair[side]),
                        rate(s.rate),
                        micros(s.cpu)
                    ),
                    Err(e) => {
                        eprintln!("  round {} {:?}: FAILED: {e}", round + 1, pair[side]);
                        row.errors.push(format!("{:?}: {e}", pair[side]));
                    }
                }
                row.samples[side].push(sample.ok());
            }
        }
        row
    }

    async fn stop(self) {
        for (_, server) in self.running {
            server.stop().await;
        }
    }

    /// Server RSS before and after `conns` idle WebSocket connections.
    async fn idle_ws(&self, imp: Impl, conns: usize) -> Result<(u64, u64)> {
        eprintln!("idle memory: {conns} WebSocket connections to {imp:?}");
        let server = Server::start(&self.spec(imp), &self.bench.logs).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = procfs::memory(server.pid)?.rss;
        let args = [
            "peer".to_owned(),
            "hold-ws".into(),
            "--addr".into(),
            server.addr.to_string(),
            "--conns".into(),
            conns.to_string(),
            "--secs".into(),
            "600".into(),
        ];
        let (holder, mut lines) =
            child::spawn_reading(&self.bench.exe, &args, &self.bench.logs, "hold-ws")?;
        let limit = Duration::from_secs(60 + conns as u64 / 100);
        let held = tokio::time::timeout(limit, lines.next_line())
            .await
            .map_err(|_| {
                Error::harness(format!("{conns} connections not open within {limit:?}"))
            })??;
        if !held.is_some_and(|l| l.starts_with("held")) {
            return Err(Error::harness("hold-ws failed (see hold-ws.log)"));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let after = procfs::memory(server.pid)?.rss;
        drop(holder);
        server.stop().await;
        Ok((before, after))
    }
}

/// Every shape dueled by `pair` on servers started for the section (with
/// `tls`: certificate and key), stopped after.
async fn duels(
    bench: &Bench,
    tls: Option<(PathBuf, PathBuf)>,
    pair: [Impl; 2],
    shapes: &[Shape],
) -> Vec<Row> {
    let mut peers = Peers::new(bench, tls);
    let mut rows = Vec::new();
    for &shape in shapes {
        rows.push(peers.duel(pair, shape).await);
    }
    peers.stop().await;
    rows
}

fn table(
    title: &str,
    intro: &str,
    peer: &str,
    unit: &str,
    rows: &[Row],
    targets: (f64, f64),
) -> String {
    let mut t = format!(
        "## {title}\n\n{intro} Targets: enchufe / {peer} ≥ {:.2}, server CPU per {unit} enchufe / {peer} ≤ {:.2}.\n\n\
         | workload | {peer} | enchufe | enchufe / {peer} | ≥ {:.2} | {peer} CPU/{unit} | enchufe CPU/{unit} | enchufe / {peer} CPU | ≤ {:.2} |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        targets.0, targets.1, targets.0, targets.1
    );
    for r in rows {
        let thr = r.ratio(|s| s.rate);
        let cpu = r.ratio(|s| s.cpu);
        let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "failed".into(), f);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.shape.label(),
            opt(r.median(1, |s| s.rate), rate),
            opt(r.median(0, |s| s.rate), rate),
            ratio(thr),
            meets(thr, targets.0, true),
            opt(r.median(1, |s| s.cpu), micros),
            opt(r.median(0, |s| s.cpu), micros),
            ratio(cpu),
            meets(cpu, targets.1, false),
        );
    }
    for r in rows {
        for e in &r.errors {
            let _ = writeln!(t, "- FAILED, {}: {e}", r.shape.label());
        }
        let [ours, theirs] = r.lost();
        if ours + theirs > 0 {
            let _ = writeln!(
                t,
                "- {}: datagrams lost over all rounds: enchufe {ours}, {peer} {theirs}",
                r.shape.label()
            );
        }
    }
    t
}

/// `compare --only ws`.
pub(super) async fn ws(bench: &Bench) -> String {
    let rows = duels(bench, None, [Impl::WsEnchufe, Impl::WsTungstenite], &WS).await;
    let mut t = table(
        "WebSocket: enchufe Server::web vs tokio-tungstenite",
        "Binary messages echoed; both servers driven by the same tokio-tungstenite client, \
         pipelined as the frame generator (feed while the window allows, flush before waiting). \
         enchufe: one port, `Server::web(ws::Options::default())`, plain profile, a `Bytes` echo \
         handler. tokio-tungstenite 0.26: `accept_async`, `feed` each echo, flush when no \
         further message is ready.",
        "tungstenite",
        "msg",
        &rows,
        (1.0, 1.0),
    );
    let n = bench.idle_conns;
    let _ = writeln!(
        t,
        "\nIdle WebSocket connections ({n}, each echoed one 16-byte message, then silent; server \
         RSS after minus before, per connection; target enchufe ≤ 16 KiB):\n\n\
         | server | per connection |\n|---|---|"
    );
    for (name, imp) in [
        ("tungstenite", Impl::WsTungstenite),
        ("enchufe", Impl::WsEnchufe),
    ] {
        let cell = match peers_idle(bench, imp, n).await {
            Ok((before, after)) => {
                format!(
                    "**{:.1} KiB**",
                    after.saturating_sub(before) as f64 / n as f64
                )
            }
            Err(e) => format!("failed: {e}"),
        };
        let _ = writeln!(t, "| {name} | {cell} |");
    }
    t
}

async fn peers_idle(bench: &Bench, imp: Impl, n: usize) -> Result<(u64, u64)> {
    Peers::new(bench, None).idle_ws(imp, n).await
}

/// `compare --only udp`.
pub(super) async fn udp(bench: &Bench) -> String {
    let rows = duels(bench, None, [Impl::UdpEnchufe, Impl::UdpRaw], &UDP).await;
    table(
        "UDP: enchufe::udp vs a raw tokio loop",
        "Datagrams echoed; both servers driven by the same raw-socket client, each socket \
         keeping a window in flight, every echo matched by its sequence number and checked \
         byte for byte (an echo missing for 200 ms counts as lost). enchufe: `UdpServer` with \
         a `Bytes` echo handler, defaults. Raw: one task, `recv_from` then `send_to`.",
        "raw",
        "datagram",
        &rows,
        (0.95, 1.05),
    )
}

/// `compare --only tls`.
pub(super) async fn tls(bench: &Bench) -> String {
    let cert = match peers::tls::make_cert(&bench.logs) {
        Ok(cert) => cert,
        Err(e) => return format!("## TLS\n\nFAILED: no certificate: {e}\n"),
    };
    let rows = duels(bench, Some(cert), [Impl::TlsEnchufe, Impl::TlsFloor], &TLS).await;
    table(
        "TLS: enchufe Server::tls vs tokio-rustls + Framed",
        "Frames echoed over TLS (rustls 0.23, ring, a self-signed certificate made per run), both \
         servers driven by the same tokio-rustls client with the frame generator; handshakes: \
         new connection, full handshake (no resumption), one frame echoed, close, 8 loops at \
         once (rate = handshakes/s, CPU per handshake). enchufe: frame server, plain profile, \
         `Server::tls(Acceptor::from_pem_files(..))`. Rival: tokio-rustls `TlsAcceptor`, then \
         the floor's `Framed<_, LengthDelimitedCodec>` echo.",
        "rustls",
        "msg",
        &rows,
        (0.95, 1.05),
    )
}
