//! Crashes and goodbyes: a client or the server killed mid-request,
//! SIGTERM with requests in flight, handlers that panic.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use enchufe::client::{Backoff, Config as ClientConfig, Reconnect, WhileDown};
use enchufe::Client;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use crate::child::{Server, Spec};
use crate::kit::*;
use crate::proc::{self};

/// A client killed with SIGKILL in the middle of a request: how soon the
/// server gives its slot back.
pub(crate) async fn kill_client(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (what, half) in [
        ("half a frame sent", true),
        ("request sent, handler running", false),
    ] {
        let srv = if half {
            cx.echo("kill-client", &[]).await?
        } else {
            cx.own("kill-client-slow", "slow", &["--delay-ms", "3000"])
                .await?
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = proc::fds(srv.pid).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("hold").arg("--addr").arg(srv.addr.to_string());
        if half {
            cmd.arg("--half");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut out = child.stdout.take().ok_or("no stdout")?;
        let mut ready = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(10), out.read_exact(&mut ready))
            .await
            .map_err(|_| "the client never got ready")?
            .map_err(|e| e.to_string())?;
        proc::wait_fds(srv.pid, Duration::from_secs(5), |n| n > base).await;
        // Let the server read what was sent (and start the handler).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        let freed = proc::wait_fds(srv.pid, Duration::from_secs(10), |n| n <= base).await;
        srv.stop().await;
        // A killed client's FIN looks like a half-close (a client may send
        // its request, shut its side and wait for the reply), so a plain
        // server notices the kill when its reply hits the dead socket: the
        // bound counts from the end of the handler (3 s) there.
        let (limit, bound) = if half {
            (Duration::from_secs(1), "freed < 1 s")
        } else {
            (
                Duration::from_secs(4),
                "freed < 1 s after the 3 s handler ends",
            )
        };
        rows.push(row(
            format!("kill -9 of a client, {what}"),
            format!(
                "slot freed {}",
                freed.map_or("not within 10 s".into(), |d| format!("in {}", ms(d)))
            ),
            bound,
            freed.is_some_and(|d| d < limit),
        ));
    }
    Ok(rows)
}
/// The server killed with SIGKILL under a connected client: a typed error,
/// then the same client served again once the server is back.
pub(crate) async fn kill_server(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut srv = cx.echo("kill-server", &[]).await?;
    let addr = srv.addr;
    let config = ClientConfig::default().reconnect(
        Reconnect::default()
            .backoff(
                Backoff::default()
                    .max_delay(Duration::from_millis(200))
                    .forever(),
            )
            .while_down(WhileDown::FailFast),
    );
    let client = connect(addr, config).await?;
    let _: Bytes = client
        .request(Bytes::from_static(b"before"))
        .await
        .map_err(|e| e.to_string())?;
    srv.signal(Signal::SIGKILL);
    srv.wait_exit(Duration::from_secs(5)).await;
    let start = Instant::now();
    let failed = tokio::time::timeout(
        Duration::from_secs(5),
        client.request::<_, Bytes>(Bytes::from_static(b"during")),
    )
    .await;
    let (error_ok, error) = match failed {
        Ok(Err(e)) => (!e.is_timeout(), variant(&e)),
        Ok(Ok(_)) => (false, "answered by a dead server?".into()),
        Err(_) => (false, "no answer within 5 s (silent)".into()),
    };
    let took = start.elapsed();
    let back = Server::start(
        &Spec::echo(&cx.echo, &[]),
        &addr.to_string(),
        cx.logs.join("kill-server-2.log"),
    )
    .await?;
    let start = Instant::now();
    let mut again = None;
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(reply) = client
            .request::<_, Bytes>(Bytes::from_static(b"after"))
            .await
        {
            if reply.as_ref() == b"after" {
                again = Some(start.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    back.stop().await;
    Ok(vec![row(
        "kill -9 of the server",
        format!(
            "request failed with {error} in {}; same client served again {} after restart",
            ms(took),
            again.map_or("never (10 s)".into(), ms)
        ),
        "typed error < 1 s, reconnected < 5 s",
        error_ok
            && took < Duration::from_secs(1)
            && again.is_some_and(|d| d < Duration::from_secs(5)),
    )])
}

/// SIGTERM with 100 requests in flight (handlers take 500 ms).
pub(crate) async fn shutdown(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for mux in [false, true] {
        let n = 100;
        let mut extra = vec!["--delay-ms", "500"];
        if mux {
            extra.push("--mux");
        }
        let name = if mux {
            "shutdown-mux"
        } else {
            "shutdown-plain"
        };
        let mut srv = cx.own(name, "slow", &extra).await?;
        let profile = profile(mux);
        let config = ClientConfig::default()
            .profile(profile)
            .request_timeout(Duration::from_secs(20));
        let mut clients = Vec::new();
        for _ in 0..if mux { 1 } else { n } {
            clients.push(connect(srv.addr, config.clone()).await?);
        }
        let mut calls = JoinSet::new();
        for i in 0..n {
            let client = clients[i % clients.len()].clone();
            calls.spawn(async move {
                client
                    .request::<_, Bytes>(Bytes::from(format!("{i}")))
                    .await
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        srv.signal(Signal::SIGTERM);
        let (mut answered, mut typed, mut silent) = (0, 0, 0);
        let mut kinds = std::collections::BTreeSet::new();
        while let Some(done) = calls.join_next().await {
            match done {
                Ok(Ok(_)) => answered += 1,
                Ok(Err(e)) if !e.is_timeout() => {
                    typed += 1;
                    kinds.insert(variant(&e));
                }
                _ => silent += 1,
            }
        }
        let exited = srv.wait_exit(Duration::from_secs(15)).await;
        let took = start.elapsed();
        rows.push(row(
            format!("shutdown, {n} in flight, {profile:?}"),
            format!(
                "{answered} answered, {typed} typed errors{}, {silent} silent; exited {}",
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.into_iter().collect::<Vec<_>>().join(", "))
                },
                if exited {
                    format!("in {:.1} s", took.as_secs_f64())
                } else {
                    "NOT within 15 s".into()
                }
            ),
            "answered + typed = 100, 0 silent, exits",
            answered + typed == n && silent == 0 && exited,
        ));
    }
    Ok(rows)
}

/// The client for one request of [`panics`]: the `shared` one if there is
/// one (multiplexed: a panic costs its request, not the connection), else
/// a new connection (plain: the panic ended the last one).
pub(crate) async fn attempt(
    shared: Option<&Client>,
    addr: SocketAddr,
    config: &ClientConfig,
) -> Result<Client, String> {
    match shared {
        Some(client) => Ok(client.clone()),
        None => connect(addr, config.clone()).await,
    }
}

/// A handler that panics, 100 times, in both profiles.
pub(crate) async fn panics(cx: &Cx) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for mux in [false, true] {
        let n = 100;
        let extra: &[&str] = if mux { &["--mux"] } else { &[] };
        let srv = cx
            .own(
                if mux { "panic-mux" } else { "panic-plain" },
                "panic",
                extra,
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = proc::fds(srv.pid).map_err(|e| e.to_string())?;
        let profile = profile(mux);
        let config = ClientConfig::default()
            .profile(profile)
            .request_timeout(Duration::from_secs(5));
        let (mut typed, mut served) = (0, 0);
        let mut kinds = std::collections::BTreeSet::new();
        let shared = if mux {
            Some(connect(srv.addr, config.clone()).await?)
        } else {
            None
        };
        for _ in 0..n {
            let client = attempt(shared.as_ref(), srv.addr, &config).await?;
            match client
                .request::<_, Bytes>(Bytes::from_static(b"panic"))
                .await
            {
                Err(e) if !e.is_timeout() => {
                    typed += 1;
                    kinds.insert(variant(&e));
                }
                _ => {}
            }
            let next = attempt(shared.as_ref(), srv.addr, &config).await?;
            if next
                .request::<_, Bytes>(Bytes::from_static(b"ok"))
                .await
                .is_ok()
            {
                served += 1;
            }
        }
        drop(shared);
        let flat = proc::wait_fds(srv.pid, Duration::from_secs(5), |f| f <= base)
            .await
            .is_some();
        srv.stop().await;
        rows.push(row(
            format!("panicking handler x{n}, {profile:?}"),
            format!(
                "{typed}/{n} typed errors ({}), next request served {served}/{n}, descriptors {}",
                kinds.into_iter().collect::<Vec<_>>().join(", "),
                if flat { "back to start" } else { "NOT back" }
            ),
            "every panic a typed error, server goes on",
            typed == n && served == n && flat,
        ));
    }
    Ok(rows)
}
