//! The holder of `compare --only scale`: up to 100,000 idle connections in
//! one process, opened in steps the harness asks for on standard input.
//!
//! One host address has about 28,000 ephemeral ports (Linux's default
//! `ip_local_port_range`, 32768–60999), so 100,000 connections from
//! 127.0.0.1 to one server port would run out of them. Each socket is bound
//! to its own source address in 127.0.0.0/8 before it connects
//! ([`source`]): every address there is the loopback interface's, and each
//! brings its own set of ports.
//!
//! ```text
//!   harness ──stdin "open 10000"──> scale-hold ──connect (bound 127.1.x.y:0)──> echo_server
//!           <──stdout "held 10000"──   (every connection echoed one frame, then silent)
//!   stdin closed: the holder drops every connection and exits
//! ```

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use futures::StreamExt;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::{Error, Result};
use crate::payload::{check, Payloads};

/// Connections opened at once. Far below the server's listen backlog
/// (4,096 for echo_server), so no SYN is dropped and retried a second later.
const CONNECTING: usize = 64;

/// Connections per source address: 500 of the ~28,000 ephemeral ports, so
/// 100,000 connections spread over 200 addresses, and a port never runs out
/// even beside another session's sockets on the same address.
const PER_SOURCE: usize = 500;

/// The source address of connection `n`: 127.1.0.1, 127.1.0.2, ...
/// (127.1.0.0/16 holds 65,534; none is 127.0.0.1, which the server and
/// the ordinary client use). Consecutive connections change address, so
/// every step of a run spreads alike.
pub(crate) fn source(n: usize, total: usize) -> Ipv4Addr {
    let addrs = total.div_ceil(PER_SOURCE).clamp(1, 65_534);
    let host = (n % addrs) as u32 + 1;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)) + host)
}

/// Raises this process's open-file limit to at least `want` descriptors
/// (soft and hard); returns the soft limit now in force. Raising the hard
/// limit needs root (`CAP_SYS_RESOURCE`) and stops at
/// `/proc/sys/fs/nr_open`; without it the soft limit rises to the hard one.
/// Children started afterwards inherit the limits.
pub(crate) fn open_files(want: u64) -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= want {
        return soft;
    }
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let new_hard = hard.max(want.min(ceiling));
    if setrlimit(Resource::RLIMIT_NOFILE, new_hard, new_hard).is_ok() {
        return new_hard;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// `enchufe-bench scale-hold`: reads `open N` lines on standard input;
/// for each, opens connections to `addr` until `N` are held (each echoes
/// one 16-byte frame, checked, so the server has accepted and served it),
/// then prints `held N`. Ends, dropping every connection, when standard
/// input closes; a connection that fails ends it with the error.
pub(crate) async fn hold(addr: SocketAddr, max: usize) -> Result<()> {
    let limit = open_files(max as u64 + 256);
    if limit < max as u64 + 16 {
        return Err(Error::harness(format!(
            "{max} connections need as many open files; the limit is {limit} \
             (raise it as root, or lower the step)"
        )));
    }
    let payload = Payloads::new(16).get(0).clone();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let mut held: Vec<TcpStream> = Vec::with_capacity(max);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let Some(want) = line
            .strip_prefix("open ")
            .and_then(|n| n.trim().parse().ok())
        else {
            return Err(Error::harness(format!(
                "scale-hold: unknown command {line:?}"
            )));
        };
        let want: usize = std::cmp::min(want, max);
        let frame = &frame;
        let mut opening = futures::stream::iter(held.len()..want)
            .map(|n| async move {
                let socket = TcpSocket::new_v4()?;
                let from = SocketAddrV4::new(source(n, max), 0);
                socket.bind(from.into())?;
                let mut stream = socket.connect(addr).await?;
                stream.set_nodelay(true)?;
                stream.write_all(frame).await?;
                let mut echo = [0; 20];
                stream.read_exact(&mut echo).await?;
                check(n, 0, &echo, frame)?;
                Ok::<_, Error>(stream)
            })
            .buffer_unordered(CONNECTING);
        while let Some(stream) = opening.next().await {
            held.push(stream?);
        }
        println!("held {}", held.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_127_1_and_never_reuse_the_servers_address() {
        let total = 100_000;
        let addrs: std::collections::HashSet<Ipv4Addr> =
            (0..total).map(|n| source(n, total)).collect();
        assert_eq!(addrs.len(), 200);
        assert!(addrs
            .iter()
            .all(|a| a.octets()[..2] == [127, 1] && a.is_loopback()));
        assert!(!addrs.contains(&Ipv4Addr::new(127, 1, 0, 0)));
        assert_eq!(source(0, 1_000), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source(2, 1_000), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source(1, 1_000), Ipv4Addr::new(127, 1, 0, 2));
    }

    #[tokio::test]
    async fn holds_connections_from_many_source_addresses() {
        // An echo of one frame per connection, as echo_server does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peers = tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            let mut streams = Vec::new();
            for _ in 0..3 {
                let (mut s, from) = listener.accept().await.unwrap();
                let mut buf = [0; 20];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
                seen.insert(from.ip());
                streams.push(s);
            }
            seen
        });
        let mut streams = Vec::new();
        for n in 0..3 {
            let socket = TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddrV4::new(source(n, 3 * PER_SOURCE), 0).into())
                .unwrap();
            let mut s = socket.connect(addr).await.unwrap();
            s.write_all(&[0, 0, 0, 16]).await.unwrap();
            s.write_all(&[7; 16]).await.unwrap();
            let mut echo = [0; 20];
            s.read_exact(&mut echo).await.unwrap();
            streams.push(s);
        }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(10), peers)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.len(), 3, "three source addresses: {seen:?}");
    }
}
