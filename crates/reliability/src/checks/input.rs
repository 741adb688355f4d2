//! Bad input: JSON nested 10,000 deep and floods of what is not frames.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use enchufe::client::Config as ClientConfig;
use enchufe::{Client, Json};
use tokio::io::AsyncWriteExt;

use crate::kit::*;
use crate::proc::{self, mib};

use super::attack::probe;

/// JSON nested 10,000 deep, to a `Json<serde_json::Value>` handler (both
/// profiles) and back to a client decoding `Json<Value>`.
pub(crate) async fn deep_json(cx: &Cx) -> Result<Vec<Row>, String> {
    let depth = 10_000;
    let nested = Bytes::from(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    let mut figures = Vec::new();
    let mut ok = true;
    for mux in [false, true] {
        let extra: &[&str] = if mux { &["--mux"] } else { &[] };
        let srv = cx
            .own(if mux { "json-mux" } else { "json-plain" }, "json", extra)
            .await?;
        let profile = profile(mux);
        let config = ClientConfig::default()
            .profile(profile)
            .request_timeout(Duration::from_secs(5));
        let client = connect(srv.addr, config.clone()).await?;
        let got = client.request::<_, Bytes>(nested.clone()).await;
        let after = connect(srv.addr, config)
            .await?
            .request::<_, Json<serde_json::Value>>(Json(serde_json::json!([1, [2]])))
            .await;
        let typed = matches!(&got, Err(e) if !e.is_timeout());
        ok &= typed && after.is_ok();
        figures.push(format!(
            "server {profile:?}: {}, next served: {}",
            got.err().map_or("answered?!".into(), |e| variant(&e)),
            after.is_ok()
        ));
        srv.stop().await;
    }
    // The client decoding it: the echo server hands the bytes back.
    let srv = cx.echo("json-client", &[]).await?;
    let client = Client::connect(srv.addr).await.map_err(|e| e.to_string())?;
    let got = client.request::<_, Json<serde_json::Value>>(nested).await;
    let typed = matches!(&got, Err(e) if !e.is_timeout());
    ok &= typed;
    figures.push(format!(
        "client: {}",
        got.err().map_or("decoded?!".into(), |e| variant(&e))
    ));
    srv.stop().await;
    Ok(vec![row(
        format!("serde_json nested {depth} deep"),
        figures.join("; "),
        "typed errors, no stack overflow, server goes on",
        ok,
    )])
}

/// What the malformed connections send, in turn.
pub(crate) fn malformed(i: usize) -> (Vec<u8>, bool) {
    match i % 5 {
        0 => (b"GET / HTTP/1.1\r\nHost: enchufe\r\n\r\n".to_vec(), false),
        // The start of a TLS ClientHello.
        1 => (
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
            false,
        ),
        2 => (u32::MAX.to_be_bytes().to_vec(), false),
        // Half a frame, then the client closes: EOF inside a frame.
        3 => {
            let mut half = 1000u32.to_be_bytes().to_vec();
            half.extend_from_slice(&[9; 100]);
            (half, true)
        }
        // Bytes from a cheap generator, then the client closes.
        _ => {
            let mut x = i as u64 | 1;
            let bytes = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (bytes, true)
        }
    }
}

pub(crate) async fn send_malformed(addr: SocketAddr, from: usize, to: usize) -> usize {
    flood(from, to, |i| async move {
        let Ok(mut stream) = connect_from(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8), addr).await
        else {
            return false;
        };
        let (bytes, then_close) = malformed(i);
        if stream.write_all(&bytes).await.is_err() {
            return true;
        }
        if !then_close {
            let _ = until_closed(&mut stream, Duration::from_secs(15)).await;
        }
        true
    })
    .await
}
/// 20,000 connections that send what is not frames.
pub(crate) async fn malformed_flood(cx: &Cx) -> Result<Vec<Row>, String> {
    let n = cx.n(20_000);
    let warm = (n / 20).max(1);
    let srv = cx.echo("malformed", &[]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base_fds = proc::fds(srv.pid).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut done = send_malformed(srv.addr, 0, warm).await;
    proc::wait_fds(srv.pid, Duration::from_secs(5), |f| f <= base_fds).await;
    let rss_warm = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let log_warm = std::fs::read_to_string(&srv.log).unwrap_or_default();
    done += send_malformed(srv.addr, warm, n).await;
    let took = start.elapsed();
    let settled = proc::wait_fds(srv.pid, Duration::from_secs(5), |f| f <= base_fds).await;
    let fds_end = proc::fds(srv.pid).unwrap_or(0);
    let rss_end = proc::rss(srv.pid).map_err(|e| e.to_string())?;
    let served = probe(srv.addr, Duration::from_secs(2)).await.is_some();
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    srv.stop().await;
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    let lines = log.lines().count();
    let per_conn = (log.len() - log_warm.len()) as f64 / (n - warm).max(1) as f64;
    let grew = rss_end as i64 - rss_warm as i64;
    // Warnings are thinned to the 1st, 2nd, 4th, 8th... bad connection.
    let warn_bound = 2 * (usize::BITS - n.leading_zeros()) as usize + 10;
    Ok(vec![
        row(
            format!("{n} malformed connections"),
            format!(
                "{done} sent in {:.1} s; RSS {:+} after the first {warm}; descriptors {base_fds} -> {fds_end}; next client {}",
                took.as_secs_f64(),
                mib(grew),
                if served { "served" } else { "NOT served" }
            ),
            "RSS < +4 MiB, descriptors back, served",
            done == n && grew < 4 << 20 && settled.is_some() && served,
        ),
        row(
            "  its log (default RUST_LOG=info)",
            format!("{warnings} warnings; {lines} lines in all, {per_conn:.0} bytes per connection"),
            &format!("<= {warn_bound} warnings (thinned), <= {} lines: none per connection", warn_bound + 10),
            warnings <= warn_bound && lines <= warn_bound + 10,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_inputs_are_never_frames_the_server_could_serve() {
        for i in 0..10 {
            let (bytes, _) = malformed(i);
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert!(len > bytes.len() - 4, "input {i} holds a whole frame");
        }
    }
}
