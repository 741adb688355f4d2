//! The whole tour in one program that exits by itself (CI runs it): a server,
//! three clients making requests at once, a push to one client and a
//! broadcast to all, half-close, graceful shutdown, a summary (`multiplexed`
//! goes on: requests in flight at once on one connection). Unlike the other
//! examples, `--addr` defaults to `127.0.0.1:0` (a free port).
//!
//! ```text
//! cargo run --example demo
//! cargo run --example demo -- --addr 127.0.0.1:9000
//! ```

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use enchufe::{handler_fn, Client, Connection, Server};
use futures::future::try_join_all;

#[derive(Parser)]
struct Args {
    /// Address for the server (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    addr: String,
}

const CLIENTS: usize = 3;
const COMMANDS: [&str; 2] = ["saltar", "correr"];

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();
    // A bug must fail CI quickly instead of hanging it.
    tokio::time::timeout(Duration::from_secs(5), tour(&args.addr)).await??;
    Ok(())
}

async fn tour(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let handler = handler_fn(move |cmd: String, conn: Connection| {
        counter.fetch_add(1, Ordering::Relaxed);
        // Per-connection state: how many commands this client has sent.
        let nth = conn.with_state(|n: &mut usize| {
            *n += 1;
            *n
        });
        let reply = format!("«{cmd}» hecho (conexión {}, orden {nth})", conn.id());
        async move { Ok::<_, Infallible>(Some(reply)) }
    });
    let server = Server::bind(addr).await?.serve(handler);
    let addr = server.local_addr();
    println!("server on {addr}");

    // Three clients at once; each makes its requests in order.
    let clients = try_join_all((0..CLIENTS).map(|i| async move {
        let client = Client::connect(addr).await?;
        for cmd in COMMANDS {
            let reply: String = client.request(cmd).await?;
            println!("client {i}: {cmd:>6} -> {reply}");
        }
        Ok::<_, enchufe::client::Error>(client)
    }))
    .await?;
    println!("{} connections live", server.connection_count());

    // Pushes go to `recv`, never to a request: the default profiles mark every
    // frame as a reply or a push. Client 0's connection is found by address.
    let first = server
        .connections()
        .into_iter()
        .find(|conn| Some(conn.peer_addr()) == clients[0].local_addr())
        .ok_or("client 0 not found among the server's connections")?;
    server
        .push(first.id(), "solo para ti: eres el primero")
        .await?;
    let reached = server.broadcast("anuncio: el servidor cierra pronto")?;
    assert_eq!(reached, CLIENTS);

    let mut pushes = 0;
    for (i, client) in clients.iter().enumerate() {
        client.close().await?; // half-close: the pushes already queued still arrive
        while let Some(msg) = client.recv::<String>().await? {
            println!("client {i}: pushed: {msg}");
            pushes += 1;
        }
    }
    server.shutdown().await;

    let requests = served.load(Ordering::Relaxed);
    assert_eq!(requests, CLIENTS * COMMANDS.len());
    assert_eq!(pushes, 1 + CLIENTS);
    assert_eq!(server.connection_count(), 0);
    println!("summary: {CLIENTS} clients, {requests} requests answered, {pushes} pushes received");
    Ok(())
}
