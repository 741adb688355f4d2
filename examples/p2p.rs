//! A peer in a mesh: it listens, dials every `--peer` (retrying until that
//! peer is up, and again whenever the link is lost), so any number of them
//! can start in any order. Commands on stdin, one per line: `send ID TEXT`,
//! `request ID TEXT`, `broadcast TEXT`, `peers`, `quit` (or end of input).
//! Output on stdout, one line per event, for people and scripts alike:
//! `up ID`, `down ID`, `recv FROM TEXT`, `reply ID TEXT`, `sent N`,
//! `peers ID,ID`, `error MESSAGE`. A request is answered `ID got TEXT`.
//!
//! ```text
//! # two peers, either first:
//! cargo run --example p2p -- --id a --addr 127.0.0.1:7001 --peer 127.0.0.1:7002
//! cargo run --example p2p -- --id b --addr 127.0.0.1:7002 --peer 127.0.0.1:7001
//! # three, in any order (each names the other two):
//! cargo run --example p2p -- --id a --addr 127.0.0.1:7001 --peer 127.0.0.1:7002 --peer 127.0.0.1:7003
//! cargo run --example p2p -- --id b --addr 127.0.0.1:7002 --peer 127.0.0.1:7001 --peer 127.0.0.1:7003
//! cargo run --example p2p -- --id c --addr 127.0.0.1:7003 --peer 127.0.0.1:7001 --peer 127.0.0.1:7002
//! ```
//!
//! `tests/hosts/mesh.sh` drives three of these across network namespaces.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use clap::Parser;
use enchufe::peer::{Config as PeerConfig, Peer, PeerEvent};
use enchufe::{handler_fn, Json};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

/// One peer of a mesh, driven from stdin.
#[derive(Parser)]
struct Args {
    /// This peer's id, sent to the others in the hello.
    #[arg(long)]
    id: String,
    /// Address to listen on (`--listen` is accepted too).
    #[arg(
        long,
        alias = "listen",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:8080"
    )]
    addr: String,
    /// Another peer's address; repeat for each.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Ping a link silent this long (the library's default if absent).
    #[arg(long, value_name = "MS")]
    keepalive_ms: Option<u64>,
    /// Drop a link silent this long: how fast a dead link is noticed.
    #[arg(long, value_name = "MS")]
    idle_ms: Option<u64>,
}

/// What travels between peers: one-way text, or a question wanting a reply.
#[derive(Serialize, Deserialize)]
enum Msg {
    Say(String),
    Ask(String),
}

/// Runs one stdin command; `Ok(false)` means quit.
async fn command(peer: &Peer, line: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let (cmd, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let (to, text) = rest.split_once(' ').unwrap_or((rest, ""));
    match cmd {
        "send" => peer.send(to, Json(Msg::Say(text.into()))).await?,
        "request" => {
            let reply: String = peer.request(to, Json(Msg::Ask(text.into()))).await?;
            println!("reply {to} {reply}");
        }
        "broadcast" => {
            let n = peer.broadcast(Json(Msg::Say(rest.into()))).await?;
            println!("sent {n}");
        }
        "peers" => println!("peers {}", peer.peers().join(",")),
        "quit" => return Ok(false),
        "" => {}
        _ => return Err(format!("unknown command {cmd:?}").into()),
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::log::init();
    let args = Args::parse();
    let mut config = PeerConfig::new(args.id.as_str());
    if let Some(ms) = args.keepalive_ms {
        config = config.keepalive(Duration::from_millis(ms));
    }
    if let Some(ms) = args.idle_ms {
        config = config.idle_timeout(Duration::from_millis(ms));
    }

    // Rust's stdout is line-buffered even into a pipe: each `println!` is
    // one whole line, flushed, never interleaved with another.
    let me = args.id.clone();
    let handler = handler_fn(move |Json(msg): Json<Msg>, conn| {
        let me = me.clone();
        async move {
            let from = conn.node_id().unwrap_or("?");
            Ok::<_, Infallible>(match msg {
                Msg::Say(text) => {
                    println!("recv {from} {text}");
                    None
                }
                Msg::Ask(text) => Some(format!("{me} got {text}")),
            })
        }
    });
    let peer = Peer::bind_with(args.addr.as_str(), handler, config).await?;
    let mut events = peer.events();
    for addr in args.peers {
        peer.add_peer(addr);
    }
    tracing::info!(id = peer.id(), addr = %peer.local_addr(), "peer up; commands on stdin");

    let mut lines = support::stdin::lines();
    loop {
        tokio::select! {
            // Both `recv`s are cancel-safe: nothing is lost when the other wins.
            event = events.recv() => match event {
                Ok(PeerEvent::Up { id, .. }) => println!("up {id}"),
                Ok(PeerEvent::Down { id }) => println!("down {id}"),
                Ok(PeerEvent::Unreachable { addr }) => println!("error gave up dialing {addr}"),
                Err(RecvError::Lagged(n)) => println!("error missed {n} events"),
                Ok(_) => {} // kinds added later
                Err(RecvError::Closed) => break,
            },
            line = lines.next() => match line {
                Some(line) => match command(&peer, &line).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => println!("error {e}"),
                },
                None => break, // end of input, Ctrl-C or SIGTERM
            },
        }
    }
    peer.close().await;
    Ok(())
}
