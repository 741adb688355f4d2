//! The whole tour in one program that exits by itself (CI runs it): a server,
//! three clients connected concurrently making requests, a push to one client
//! and a broadcast to all, half-close, graceful shutdown, a summary. Then
//! requests in flight at once on one connection (the multiplexed profile, the
//! clients' default), answered out of order yet each matched to its request,
//! pushes kept apart from replies.
//!
//! Unlike the other examples, `--addr` defaults to `127.0.0.1:0` (a free port);
//! the two servers use it one after the other.
//!
//! ```text
//! cargo run --example demo
//! cargo run --example demo -- --addr 127.0.0.1:9000
//! RUST_LOG=debug cargo run --example demo
//! ```

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use enchufe::server::Profile;
use enchufe::{handler_fn, Client, Connection, Server};
use futures::future::try_join_all;
use futures::TryStreamExt;

/// Runs a server and three clients in one process.
#[derive(Parser)]
struct Args {
    /// Address for the server (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    addr: String,
}

const CLIENTS: usize = 3;
const COMMANDS: [&str; 2] = ["saltar", "correr"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::log::init();
    let args = Args::parse();
    let started = Instant::now();
    // A bug must fail CI quickly instead of hanging it.
    let both = async {
        tour(&args.addr).await?;
        multiplexed(&args.addr).await
    };
    tokio::time::timeout(Duration::from_secs(5), both).await??;
    println!("done in {:?}", started.elapsed());
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

    // Pushes go to `recv`, never to a request: the default profiles (the
    // server's automatic one answers the clients' multiplexed hello) mark
    // every frame as a reply or a push.
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

/// Requests in flight at once on the multiplexed connection.
const TASKS: u64 = 4;

async fn multiplexed(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = enchufe::server::Config::default().profile(Profile::Multiplexed);
    let server = Server::bind(addr).await?.with_config(config);
    let server = server.serve(handler_fn(|task: String, conn: Connection| {
        let nth = conn.with_state(|n: &mut u64| {
            *n += 1;
            *n
        });
        async move {
            // Handlers run concurrently; the first to arrive answers last,
            // each after a push that the server sends 10 ms before the reply.
            tokio::time::sleep(Duration::from_millis(30 * (TASKS - nth))).await;
            let pushed = conn.push(format!("aviso: «{task}» casi lista")).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            pushed.map(|()| Some(format!("«{task}» hecha (llegó {nth}ª)")))
        }
    }));
    let config = enchufe::client::Config::default().profile(Profile::Multiplexed);
    let client = Client::connect_with(server.local_addr(), config).await?;
    println!("multiplexed server on {}", server.local_addr());

    // Clones of one client: one connection, requests in flight at once, by id.
    let asking = async {
        try_join_all((1..=TASKS).map(|i| {
            let client = client.clone();
            async move {
                let reply: String = client.request(format!("tarea {i}")).await?;
                println!("  reply to tarea {i}: {reply}");
                assert!(reply.starts_with(&format!("«tarea {i}»")), "not its reply");
                Ok::<_, enchufe::client::Error>(())
            }
        }))
        .await?;
        client.close().await // everything answered: the server may close
    };
    // Push frames only: a reply never passes for a push, nor a push for a reply.
    let listening = client
        .pushes::<String>()
        .try_fold(0, |pushes, push| async move {
            println!("  push: {push}");
            Ok(pushes + 1)
        });
    let (_, pushes) = tokio::try_join!(asking, listening)?;
    assert_eq!(pushes, TASKS);
    server.shutdown().await;
    println!("multiplexed: {TASKS} replies out of order, each to its request; {pushes} pushes");
    Ok(())
}
