//! The peers of the `ws`, `udp` and `tls` sections: each enchufe server and
//! its hand-written rival, served by `enchufe-bench peer serve`, and the one
//! load generator per transport that drives both (`peer load`), checking
//! every echo byte for byte.
//!
//! - [`ws`]: enchufe's front door with `Server::web` against a
//!   tokio-tungstenite echo; the load is tokio-tungstenite's client.
//! - [`udp`]: `enchufe::udp`'s server against a raw `UdpSocket`
//!   `recv_from`/`send_to` loop; the load is a raw socket too.
//! - [`tls`]: enchufe's frame server with `Server::tls` against
//!   tokio-rustls + `Framed<_, LengthDelimitedCodec>`; the load is
//!   tokio-rustls with the frame generator, and a handshake loop.

mod pipeline;
pub(crate) mod tls;
pub(crate) mod udp;
pub(crate) mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::procfs;

/// `enchufe-bench peer ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// Serves one echo peer; prints `listening on ADDR`.
    Serve {
        #[arg(long = "impl", value_enum)]
        imp: Impl,
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// PEM certificate and key (the TLS peers).
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        /// Stop when standard input ends.
        #[arg(long)]
        exit_on_stdin_eof: bool,
    },
    /// One load run against a peer; prints a JSON report.
    Load(Spec),
    /// Opens WebSocket connections, echoes one message on each, prints
    /// `held N`, then holds them idle.
    HoldWs {
        #[arg(long, value_name = "HOST:PORT")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
    },
}

/// The echo servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Impl {
    /// enchufe's front door with `Server::web` (frames, WebSocket).
    WsEnchufe,
    /// tokio-tungstenite, accepting and echoing by hand.
    WsTungstenite,
    /// `enchufe::udp::UdpServer` with a `Bytes` echo handler.
    UdpEnchufe,
    /// A raw tokio `UdpSocket` loop.
    UdpRaw,
    /// enchufe's frame server with `Server::tls`.
    TlsEnchufe,
    /// tokio-rustls + tokio-util `Framed`.
    TlsFloor,
}

/// Which load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Binary WebSocket messages, pipelined.
    Ws,
    /// Datagrams, a window in flight per socket.
    Udp,
    /// Frames over TLS, pipelined.
    Tls,
    /// New TLS connection, one frame, close; `depth` at a time.
    Handshake,
}

/// One load run.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Spec {
    #[arg(long, value_enum)]
    pub(crate) kind: Kind,
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) addr: SocketAddr,
    /// Connections (sockets, for UDP; for handshakes, unused).
    #[arg(long, default_value_t = 1)]
    pub(crate) conns: usize,
    /// Messages in flight per connection (handshakes: at a time).
    #[arg(long, default_value_t = 1)]
    pub(crate) depth: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    #[arg(long, default_value_t = 1.0)]
    pub(crate) secs: f64,
    /// The server's certificate (TLS).
    #[arg(long)]
    pub(crate) cert: Option<PathBuf>,
}

impl Spec {
    pub(crate) fn to_args(&self) -> Vec<String> {
        let kind = clap::ValueEnum::to_possible_value(&self.kind)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        let mut args = vec![
            "peer".into(),
            "load".into(),
            "--kind".into(),
            kind,
            "--addr".into(),
            self.addr.to_string(),
            "--conns".into(),
            self.conns.to_string(),
            "--depth".into(),
            self.depth.to_string(),
            "--size".into(),
            self.size.to_string(),
            "--secs".into(),
            self.secs.to_string(),
        ];
        if let Some(cert) = &self.cert {
            args.extend(["--cert".into(), cert.display().to_string()]);
        }
        args
    }
}

/// What a run achieved; printed as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    /// Echoes (or handshakes) received and checked.
    pub(crate) frames: u64,
    pub(crate) secs: f64,
    /// Datagrams whose echo never came (UDP only).
    pub(crate) lost: u64,
    pub(crate) client_cpu_secs: f64,
}

/// Runs `peer ...`.
pub(crate) async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Serve {
            imp,
            addr,
            cert,
            key,
            exit_on_stdin_eof,
        } => {
            let tls = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => None,
            };
            let (local, server) = serve(imp, addr, tls).await?;
            println!("listening on {local}");
            crate::wait_to_stop(exit_on_stdin_eof).await;
            server.abort();
            Ok(())
        }
        Cmd::Load(spec) => {
            let mut report = load(&spec).await?;
            report.client_cpu_secs = procfs::cpu_secs(std::process::id())?;
            println!("{}", serde_json::to_string(&report).expect("plain data"));
            Ok(())
        }
        Cmd::HoldWs { addr, conns, secs } => ws::hold(addr, conns, secs).await,
    }
}

/// A server bound and serving in a task: its address and the task.
pub(crate) type Served = (SocketAddr, tokio::task::JoinHandle<()>);

/// Serves `server` (its doors and layers set) with a `Bytes` echo handler
/// until the task is aborted.
pub(crate) fn echo(server: enchufe::Server) -> Result<Served> {
    let local = server
        .local_addr()
        .map_err(|e| Error::harness(e.to_string()))?;
    let handle = server.serve(enchufe::handler_fn(
        |frame: bytes::Bytes, _conn| async move { Ok::<_, std::convert::Infallible>(Some(frame)) },
    ));
    Ok((
        local,
        tokio::spawn(async move {
            let _serving = handle;
            std::future::pending::<()>().await;
        }),
    ))
}

/// Binds, and serves in a task.
async fn serve(imp: Impl, addr: SocketAddr, tls: Option<(PathBuf, PathBuf)>) -> Result<Served> {
    let need_tls = || {
        tls.clone()
            .ok_or_else(|| Error::harness("--cert and --key needed"))
    };
    Ok(match imp {
        Impl::WsEnchufe => ws::enchufe(addr).await?,
        Impl::WsTungstenite => ws::tungstenite(addr).await?,
        Impl::UdpEnchufe => udp::enchufe(addr).await?,
        Impl::UdpRaw => udp::raw(addr).await?,
        Impl::TlsEnchufe => tls::enchufe(addr, need_tls()?).await?,
        Impl::TlsFloor => tls::floor(addr, need_tls()?).await?,
    })
}

async fn load(spec: &Spec) -> Result<Report> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks: JoinSet<Result<(u64, u64)>> = JoinSet::new();
    match spec.kind {
        Kind::Ws => ws::load(spec, &stop, &mut tasks).await?,
        Kind::Udp => udp::load(spec, &stop, &mut tasks).await?,
        Kind::Tls | Kind::Handshake => tls::load(spec, &stop, &mut tasks).await?,
    }
    // Connections are open (the handshake load opens its own as it goes):
    // the clock times traffic.
    let start = tokio::time::Instant::now();
    let timer = tokio::time::sleep(Duration::from_secs_f64(spec.secs));
    tokio::pin!(timer);
    let mut armed = true;
    let (mut frames, mut lost) = (0, 0);
    loop {
        tokio::select! {
            () = &mut timer, if armed => {
                armed = false;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok((f, l)))) => {
                    frames += f;
                    lost += l;
                }
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(Error::harness(format!("load task failed: {e}"))),
            },
        }
    }
    Ok(Report {
        frames,
        secs: start.elapsed().as_secs_f64(),
        lost,
        client_cpu_secs: 0.0,
    })
}

#[cfg(test)]
mod tests {
    //! Each load against both of its servers in-process, and the check
    //! catching a server that lies.

    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    fn spec(kind: Kind, addr: SocketAddr, size: usize) -> Spec {
        Spec {
            kind,
            addr,
            conns: 2,
            depth: 4,
            size,
            secs: 0.3,
            cert: None,
        }
    }

    /// Bounds a test that would otherwise hang on a bug; not a timing check.
    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("load run hung")
    }

    async fn echoes(imp: Impl, spec: impl Fn(SocketAddr) -> Spec, tls: Option<(PathBuf, PathBuf)>) {
        let (addr, server) = serve(imp, "127.0.0.1:0".parse().unwrap(), tls)
            .await
            .unwrap();
        let report = bounded(load(&spec(addr))).await.unwrap();
        assert!(report.frames > 0, "{imp:?}: no echo");
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ws_load_checks_the_echoes_of_both_servers() {
        for imp in [Impl::WsEnchufe, Impl::WsTungstenite] {
            echoes(imp, |a| spec(Kind::Ws, a, 100), None).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn udp_load_checks_the_echoes_of_both_servers() {
        for imp in [Impl::UdpEnchufe, Impl::UdpRaw] {
            echoes(imp, |a| spec(Kind::Udp, a, 64), None).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_loads_check_the_echoes_of_both_servers() {
        let dir = std::env::temp_dir().join(format!("enchufe-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = tls::make_cert(&dir).unwrap();
        for imp in [Impl::TlsEnchufe, Impl::TlsFloor] {
            for kind in [Kind::Tls, Kind::Handshake] {
                let with_cert = |a| Spec {
                    cert: Some(cert.clone()),
                    ..spec(kind, a, 16)
                };
                echoes(imp, with_cert, Some((cert.clone(), key.clone()))).await;
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn ws_load_catches_a_flipped_bit() {
        // Echoes faithfully, except byte 5 of each connection's third message.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    let mut n = 0;
                    while let Some(Ok(Message::Binary(b))) = ws.next().await {
                        let mut b = b.to_vec();
                        if n == 2 {
                            b[5] ^= 1;
                        }
                        n += 1;
                        if ws.send(Message::Binary(b.into())).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let err = bounded(load(&spec(Kind::Ws, addr, 100))).await.unwrap_err();
        assert!(
            matches!(err, Error::Mismatch { frame: 2, .. }),
            "expected a mismatch at message 2, got {err}"
        );
    }
}
