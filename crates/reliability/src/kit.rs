//! What every check uses: the table row, the context, frames, loopback
//! connections from a chosen address, percentiles.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use enchufe::client::Config as ClientConfig;
use enchufe::{Client, Profile};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::child::{Server, Spec};
use crate::proc::{self};

/// One line of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) check: String,
    pub(crate) figure: String,
    pub(crate) bound: String,
    pub(crate) ok: bool,
    /// Of a check in `TARGETS` (main.rs): reported, not gating.
    pub(crate) target: bool,
}

pub(crate) fn row(check: impl Into<String>, figure: String, bound: &str, ok: bool) -> Row {
    Row {
        check: check.into(),
        figure,
        bound: bound.to_string(),
        ok,
        target: false,
    }
}

/// What every check needs.
#[derive(Debug)]
pub(crate) struct Cx {
    /// The `echo_server` example binary.
    pub(crate) echo: PathBuf,
    /// Where server logs go.
    pub(crate) logs: PathBuf,
    /// Multiplier on connection counts (1.0: the headline figures).
    pub(crate) scale: f64,
}

impl Cx {
    pub(crate) fn n(&self, full: usize) -> usize {
        ((full as f64 * self.scale).round() as usize).max(1)
    }

    pub(crate) async fn echo(&self, name: &str, extra: &[&str]) -> Result<Server, String> {
        let spec = Spec::echo(&self.echo, extra);
        Server::start(&spec, "127.0.0.1:0", self.logs.join(format!("{name}.log"))).await
    }

    pub(crate) async fn own(
        &self,
        name: &str,
        kind: &str,
        extra: &[&str],
    ) -> Result<Server, String> {
        let spec = Spec::own(kind, extra);
        Server::start(&spec, "127.0.0.1:0", self.logs.join(format!("{name}.log"))).await
    }
}

/// The server's frame limit and per-connection output budget, defaults of
/// `server::Config`: the byte budget memory checks are held to.
pub(crate) const FRAME: u64 = 8 << 20;
pub(crate) const QUEUED: u64 = 4 << 20;

pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A TCP connection to `addr` from the loopback address `from`, so that
/// attackers and the ordinary client (127.0.0.1) are told apart.
pub(crate) async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(addr).await
}

/// Reads (and discards) until the other end closes; `Err` on timeout.
pub(crate) async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Result<(), ()> {
    let mut buf = vec![0; 64 << 10];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| ())
}

/// A client of `config` connected to `addr`; failing to connect fails the
/// check.
pub(crate) async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client, String> {
    Client::connect_with(addr, config)
        .await
        .map_err(|e| e.to_string())
}

/// The profile a check's server runs with `--mux` (or without).
pub(crate) fn profile(mux: bool) -> Profile {
    if mux {
        Profile::Multiplexed
    } else {
        Profile::Plain
    }
}

/// The `p`th percentile (0..=100) of `samples`, nearest rank.
pub(crate) fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Peak RSS growth of `pid` over `base` since the last reset.
pub(crate) fn peak_growth(pid: u32, base: u64) -> i64 {
    proc::peak_rss(pid).unwrap_or(0) as i64 - base as i64
}
/// How many `samples`, and their p50, p99 and maximum.
pub(crate) fn latencies(samples: &mut [Duration]) -> (usize, Duration, Duration, Duration) {
    let p50 = percentile(samples, 50.0);
    let p99 = percentile(samples, 99.0);
    let max = samples.last().copied().unwrap_or_default();
    (samples.len(), p50, p99, max)
}
/// The short name of an error variant, from its `Debug`; for a
/// multiplexed error reply, with its code (`Remote ShuttingDown`).
pub(crate) fn variant(e: &impl std::fmt::Debug) -> String {
    let text = format!("{e:?}");
    let name = text.split(['(', ' ', '{']).next().unwrap_or("");
    match text.split_once("code: ") {
        Some((_, rest)) if name == "Remote" => {
            let code = rest.split([',', ' ', '}', '(']).next().unwrap_or("");
            format!("Remote {code}")
        }
        _ => name.to_string(),
    }
}
/// Runs `conn` for each of `from..to`, 64 at a time; how many returned
/// `true`.
pub(crate) async fn flood<F, Fut>(from: usize, to: usize, conn: F) -> usize
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    futures::stream::iter(from..to)
        .map(conn)
        .buffer_unordered(64)
        .fold(0, |a, ok| async move { a + usize::from(ok) })
        .await
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=200).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut samples, 50.0), Duration::from_millis(100));
        assert_eq!(percentile(&mut samples, 99.0), Duration::from_millis(198));
        assert_eq!(percentile(&mut samples, 100.0), Duration::from_millis(200));
        assert_eq!(percentile(&mut [], 99.0), Duration::ZERO);
    }

    #[test]
    fn variants_are_named_with_the_remote_code() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum E {
            Remote { code: ErrorCode, message: String },
            ClosedByPeer,
        }
        #[derive(Debug)]
        enum ErrorCode {
            ShuttingDown,
        }
        let remote = E::Remote {
            code: ErrorCode::ShuttingDown,
            message: "bye".into(),
        };
        assert_eq!(variant(&remote), "Remote ShuttingDown");
        assert_eq!(variant(&E::ClosedByPeer), "ClosedByPeer");
    }
}
