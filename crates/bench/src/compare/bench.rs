//! The settings of a run and the servers its duels run against.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::child::{self, Server, ServerSpec};
use crate::error::{Error, Result};
use crate::load::{Kind, Report, Spec};

use super::units::KIB;

/// The server processes the duels run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Srv {
    Floor,
    Plain,
    Mux,
    Tarpc,
    /// enchufe's `http_hello` example.
    Http,
    /// hyper's hello server, its defaults.
    Hyper,
    /// hyper's hello server with `pipeline_flush(true)`.
    HyperFlush,
    TarpcNagle,
}

/// The settings of a run, after `--quick` picked its defaults.
#[derive(Debug)]
pub(super) struct Bench {
    pub(super) exe: PathBuf,
    /// Built only when a frame section runs.
    pub(super) echo_server: Option<PathBuf>,
    /// Built only when the HTTP section runs.
    pub(super) http_hello: Option<PathBuf>,
    pub(super) logs: PathBuf,
    pub(super) rounds: usize,
    pub(super) secs: f64,
    pub(super) idle_conns: usize,
    pub(super) abuse_secs: f64,
    pub(super) quick: bool,
    pub(super) servers: HashMap<Srv, Server>,
}

impl Bench {
    /// Seconds per run of the ws, udp and tls duels: at most 0.5 s with
    /// `--quick`, so that the whole quick run stays under three minutes.
    pub(super) fn peer_secs(&self) -> f64 {
        if self.quick {
            self.secs.min(0.5)
        } else {
            self.secs
        }
    }

    /// How to start `srv`; enchufe's example runs with `RUST_LOG=warn` so
    /// that its per-connection `info` lines are not counted as its cost.
    pub(super) fn server_spec(&self, srv: Srv, max_connections: Option<usize>) -> ServerSpec {
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
        let example = |path: &Option<PathBuf>| {
            // `run` builds each example its sections need.
            path.clone().expect("the example is built for this section")
        };
        let enchufe = |name: &str, mux: bool| {
            let mut args: Vec<OsString> = vec!["--addr".into(), "127.0.0.1:0".into()];
            if let Some(n) = max_connections {
                args.extend(["--max-connections".into(), n.to_string().into()]);
            }
            // Each profile pinned: echo_server's default (automatic) would
            // serve the plain runs too, but the figures must not depend on it.
            args.push(if mux { "--mux" } else { "--plain" }.into());
            ServerSpec {
                name: name.into(),
                program: example(&self.echo_server),
                args,
                env: vec![("RUST_LOG".into(), "warn".into())],
            }
        };
        match srv {
            Srv::Floor => ours("floor", "floor"),
            Srv::Tarpc => ours("tarpc", "tarpc"),
            Srv::TarpcNagle => ours("tarpc-nagle", "tarpc-nagle"),
            Srv::Plain => enchufe("enchufe", false),
            Srv::Mux => enchufe("enchufe-mux", true),
            Srv::Hyper => ours("hyper", "hyper"),
            Srv::HyperFlush => ours("hyper-flush", "hyper-flush"),
            // Its defaults, as a user runs it (a 5 s handler deadline
            // included); its per-request log lines are `info`.
            Srv::Http => ServerSpec {
                name: "http_hello".into(),
                program: example(&self.http_hello),
                args: vec!["--addr".into(), "127.0.0.1:0".into()],
                env: vec![("RUST_LOG".into(), "warn".into())],
            },
        }
    }

    /// The running server for `srv`, started (and warmed up) on first use
    /// or again if it died.
    pub(super) async fn server(&mut self, srv: Srv) -> Result<&Server> {
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
                Srv::Http | Srv::Hyper | Srv::HyperFlush => Kind::Http,
                Srv::TarpcNagle => Kind::TarpcNagle,
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

    pub(super) async fn stop_servers(&mut self) {
        for (_, server) in self.servers.drain() {
            server.stop().await;
        }
    }

    /// One `load` process, to the end.
    pub(super) async fn load(&self, spec: &Spec) -> Result<Report> {
        let mut args = vec!["load".to_owned()];
        args.extend(spec.to_args());
        let limit = Duration::from_secs_f64(spec.secs + 60.0);
        let out = child::output(&self.exe, &args, limit).await?;
        serde_json::from_str(out.trim())
            .map_err(|e| Error::harness(format!("load printed {out:?}: {e}")))
    }
}
