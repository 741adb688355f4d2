//! A peer in a mesh: it listens on `--addr` and dials every `--peer`, again
//! whenever the link is lost, so peers start in any order. Commands on stdin,
//! one per line: `send ID TEXT`, `request ID TEXT`, `broadcast TEXT`, `peers`,
//! `quit` (or end of input). Output on stdout, one line per event, for people
//! and scripts alike (`tests/hosts/mesh.sh` drives three peers across network
//! namespaces): `up ID`, `down ID`, `recv FROM TEXT`, `reply ID TEXT`, `sent
//! N`, `peers ID,ID`, `error MESSAGE`. Every message is answered `ID got
//! TEXT`, a reply that a one-way `send` or `broadcast` drops.
//!
//! ```text
//! cargo run --example p2p -- --id a --addr 127.0.0.1:7001 --peer 127.0.0.1:7002
//! cargo run --example p2p -- --id b --addr 127.0.0.1:7002 --peer 127.0.0.1:7001
//! ```

mod support;

use std::convert::Infallible;
use std::time::Duration;

use clap::Parser;
use enchufe::peer::{Config, Peer, PeerEvent};
use enchufe::{handler_fn, Connection};
use tokio::sync::broadcast::error::RecvError;

#[derive(Parser)]
struct Args {
    /// This peer's id, sent to the others in the hello.
    #[arg(long)]
    id: String,
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Another peer's address; repeat for each.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Ping a link silent this long (the library's default if absent).
    #[arg(long, value_name = "MS", value_parser = support::args::millis)]
    keepalive_ms: Option<Duration>,
    /// Drop a link silent this long: how fast a dead link is noticed.
    #[arg(long, value_name = "MS", value_parser = support::args::millis)]
    idle_ms: Option<Duration>,
    /// Stop dialing a `--peer` after this many failed attempts (about 2 s
    /// apart once backed off); without it, dial until the peer is up.
    #[arg(long, value_name = "N")]
    dial_attempts: Option<u32>,
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();
    let mut config = Config::new(args.id.as_str());
    config.keepalive = args.keepalive_ms.unwrap_or(config.keepalive);
    config.idle_timeout = args.idle_ms.unwrap_or(config.idle_timeout);
    if let Some(attempts) = args.dial_attempts {
        config.backoff = config.backoff.max_attempts(attempts);
    }

    // Rust's stdout is line-buffered, into a pipe too: one `println!`, one line.
    let me = args.id;
    let handler = handler_fn(move |text: String, conn: Connection| {
        println!("recv {} {text}", conn.node_id().unwrap_or("?"));
        let reply = format!("{me} got {text}");
        async move { Ok::<_, Infallible>(Some(reply)) }
    });
    let peer = Peer::bind_with(args.addr.as_str(), handler, config).await?;
    let mut events = peer.events();
    for addr in args.peers {
        peer.add_peer(addr);
    }
    tracing::info!(id = peer.id(), addr = %peer.local_addr(), "peer up; commands on stdin");

    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(PeerEvent::Up { id, .. }) => println!("up {id}"),
                Ok(PeerEvent::Down { id }) => println!("down {id}"),
                Ok(PeerEvent::Unreachable { addr }) => println!("error gave up dialing {addr}"),
                Ok(_) => {} // kinds added later
                Err(RecvError::Lagged(n)) => println!("error missed {n} events"),
                Err(RecvError::Closed) => break,
            }
        }
    });
    let mut lines = support::stdin::lines();
    while let Some(line) = lines.next().await.filter(|line| line.trim() != "quit") {
        if let Err(e) = command(&peer, &line).await {
            println!("error {e}");
        }
    }
    peer.close().await;
    Ok(())
}

/// Runs one stdin command.
async fn command(peer: &Peer, line: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (cmd, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let (to, text) = rest.split_once(' ').unwrap_or((rest, ""));
    match cmd {
        "send" => peer.send(to, text).await?,
        "request" => println!("reply {to} {}", peer.request::<_, String>(to, text).await?),
        "broadcast" => println!("sent {}", peer.broadcast(rest).await?),
        "peers" => println!("peers {}", peer.peers().join(",")),
        "" => {}
        _ => return Err(format!("unknown command {cmd:?}").into()),
    }
    Ok(())
}
