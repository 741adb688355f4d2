//! Server memory: idle connections held open, and abusive clients.

use std::time::Duration;

use tokio::time::Instant;

use crate::child::{self, Server};
use crate::error::{Error, Result};
use crate::procfs;
use crate::tools::AbuseReport;

use super::bench::{Bench, Srv};

/// Memory held by idle connections on one server.
#[derive(Debug)]
pub(super) struct IdleRow {
    pub(super) server: &'static str,
    pub(super) conns: usize,
    pub(super) before_kib: u64,
    pub(super) after_kib: u64,
}

/// Server memory while an abusive client ran.
#[derive(Debug)]
pub(super) struct AbuseRow {
    pub(super) case: &'static str,
    pub(super) target: &'static str,
    pub(super) report: AbuseReport,
    /// Growth over the idle baseline while the client ran: RSS and VmSize
    /// at their peak, and the peak RSS the kernel kept (VmHWM).
    pub(super) growth: procfs::Memory,
    pub(super) after_rss_kib: u64,
}

impl Bench {
    /// RSS of a fresh server before and after `idle_conns` connections that
    /// each echoed one frame and went quiet.
    pub(super) async fn idle(&self, srv: Srv) -> Result<IdleRow> {
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
    pub(super) async fn abuse(&self, case: &'static str) -> Result<AbuseRow> {
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
            growth: procfs::Memory {
                rss: peak.rss.saturating_sub(base.rss),
                size: peak.size.saturating_sub(base.size),
                hwm: after.hwm.saturating_sub(base.rss),
            },
            after_rss_kib: after.rss.saturating_sub(base.rss),
        })
    }
}
